"""Reaching an Exchange organisation, shared by two stages: the stream app asks its
directory (recipient resolution) and the delivery targets write through it.

``ews`` (exchangelib connection, its patches and error table), ``graph`` (httpx client and
error table), ``directory`` (ResolveNames / Graph users, exact match). Only the kernel is
imported from here, never a stage, so the stream app does not depend on the delivery stage.
"""
