"""Test doubles the project owns, shipped so others can test against them.

Everything here is an EMULATOR of a Microsoft service, not the service: it implements the
subset of the protocol mailferry uses, strictly, with faults on demand.
"""
