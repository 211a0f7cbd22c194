"""Fetch producers: POP3 and IMAP mailboxes into ``mailferry.raw``."""
