"""Fetch producers: POP3 and IMAP mailboxes into ``mailferry.raw``.

Mails go out packed per raw partition through ``mailferry.raw_sends`` (shared with
``mailferry import``); fetch state and raw records are read and written through their typed
views (``mailferry.schemas.records``).
"""
