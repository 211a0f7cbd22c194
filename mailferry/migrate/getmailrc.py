"""getmail6's rc files (one account each, INI) read into a ``Migration``.

The INI syntax is the standard library's ``configparser`` (what getmail6 itself uses);
the retriever type names the protocol, TLS and personal/multidrop mode.
"""

from __future__ import annotations

import ast
import configparser
import re
from typing import Any

from mailferry.migrate.model import Migration

_TYPE = re.compile(r"^(?P<mode>Simple|Multidrop|BrokenUIDL)(?P<proto>POP3|IMAP|SDPS)(?P<ssl>SSL)?Retriever$")
CARRIED = {
    "type", "server", "port", "username", "password", "mailboxes", "envelope_recipient",
    "ca_certs", "use_apop", "timeout", "use_xoauth2", "password_command",
}  # fmt: skip
DEFAULT_PORTS = {("pop3", True): 995, ("pop3", False): 110, ("imap", True): 993, ("imap", False): 143}


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _folders(value: str) -> list[str]:
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(parsed, str):
        return [parsed]
    return [str(item) for item in parsed] if isinstance(parsed, (tuple, list)) else []


def _envelope(value: str) -> tuple[str, int]:
    """getmail6's ``envelope_recipient = delivered-to:1`` (header, 1-based occurrence)."""
    header, _, position = value.partition(":")
    return header.strip(), int(position) if position.strip().isdigit() else 1


def read_getmailrc(text: str, origin: str, migration: Migration, *, domain: str | None = None) -> None:
    """Add the account of one getmailrc to ``migration``."""
    parser = configparser.ConfigParser(interpolation=None)
    where = origin
    try:
        parser.read_string(text, source=origin)
    except configparser.Error as exc:
        migration.note(where, f"not a getmailrc ({exc.__class__.__name__}): left out")
        return
    if not parser.has_section("retriever"):
        migration.note(where, "no [retriever] section: left out")
        return
    retriever = dict(parser.items("retriever"))
    match = _TYPE.match(retriever.get("type", "").strip())
    if match is None or match["proto"] == "SDPS":
        migration.note(where, f"retriever type {retriever.get('type', '')!r} is not supported: left out")
        return
    kind = "pop3" if match["proto"] == "POP3" else "imap"
    implicit = bool(match["ssl"])
    host, username = retriever.get("server", "").strip(), retriever.get("username", "").strip()
    source: dict[str, Any] = {
        "id": migration.source_id(host, username),
        "kind": kind,
        "mode": "global" if match["mode"] == "Multidrop" else "personal",
        "host": host,
        "tls": "implicit" if implicit else "starttls",
        "username": username,
    }
    if not implicit:
        migration.note(where, "getmail6 talked in plain text here; mailferry asks for STARTTLS")
    port = retriever.get("port", "").strip()
    if port.isdigit() and int(port) != DEFAULT_PORTS[(kind, implicit)]:
        source["port"] = int(port)
    if _bool(retriever.get("use_xoauth2", "false")):
        source["auth"] = {
            "kind": "oauth2-command",
            "mechanism": "XOAUTH2",
            "command": ["CHANGE-ME-token-helper"],
        }
        migration.note(where, "use_xoauth2: set auth.command to the program that prints the token")
    else:
        source["auth"] = {"kind": "password", "password": migration.secret(host, username)}
        if _bool(retriever.get("use_apop", "false")):
            source["auth"]["apop"] = True
        if "password_command" in retriever:
            migration.note(where, "password_command: put its output in the environment variable instead")
    if source["mode"] == "global":
        if "envelope_recipient" in retriever:
            header, position = _envelope(retriever["envelope_recipient"])
            source["envelope_headers"] = [header]
            if position != 1:
                source["trusted_occurrence"] = position
    else:
        address = username if "@" in username else None
        if address is None:
            address = f"{username}@{domain or 'example.invalid'}"
            if domain is None:
                migration.note(where, f"user {username!r} has no domain: pass --domain")
        source["deliver_to"] = address.lower()
        migration.add_domain(address.rsplit("@", 1)[1])
    if kind == "imap" and "mailboxes" in retriever:
        source["folders"] = _folders(retriever["mailboxes"]) or ["INBOX"]
    if retriever.get("ca_certs"):
        source["ca_file"] = retriever["ca_certs"].strip()
    if retriever.get("timeout", "").strip().isdigit():
        source["timeout"] = f"{int(retriever['timeout'])}s"
    left = sorted(set(retriever) - CARRIED)
    if left:
        migration.note(where, f"[retriever] {', '.join(left)}: not carried over")
    _options(parser, source, kind, where, migration)
    if parser.has_section("destination"):
        kind_of = parser.get("destination", "type", fallback="?")
        migration.note(where, f"[destination] {kind_of}: delivery goes to the tenant's target instead")
    migration.sources.append(source)


def _options(
    parser: configparser.ConfigParser, source: dict[str, Any], kind: str, where: str, migration: Migration
) -> None:
    options = dict(parser.items("options")) if parser.has_section("options") else {}
    keep = not _bool(options.get("delete", "false"))
    if keep:
        if kind == "pop3":
            source["leave_on_server"] = True
            days = options.get("delete_after", "").strip()
            if days.isdigit() and int(days) > 0:
                source["delete_after"] = f"{int(days)}d"
        else:
            source["after_fetch"] = "seen"
    size = options.get("max_message_size", "").strip()
    if size.isdigit() and int(size) > 0:
        source["max_message_size"] = int(size)
    count = options.get("max_messages_per_session", "").strip()
    if count.isdigit() and int(count) > 0:
        source["max_messages_per_pass"] = int(count)
    if "read_all" in options:
        migration.note(where, "read_all: mailferry fetches every message it has not fetched before")
    left = sorted(
        set(options) - {"delete", "delete_after", "max_message_size", "max_messages_per_session", "read_all"}
    )
    if left:
        migration.note(where, f"[options] {', '.join(left)}: not carried over")
