"""The web console (``mailferry console``): status, dead letters and audit traces in a browser.

Server-rendered pages of a small Starlette app; every figure comes from the same readers the
CLI uses (``mailferry.status``, ``consumers.dlq``, ``mailferry.audit_trace``).
"""
