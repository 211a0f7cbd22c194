"""fetchmail's options turned into mailferry sources, the differences named.

Where fetchmail was laxer than mailferry (plain text after a failed STARTTLS, unverified
certificates) the stricter setting is kept and the difference is listed, never copied.
"""

from __future__ import annotations

from typing import Any

from mailferry.migrate.fetchmailrc import DELIVERY, IGNORED, Entry, Poll, read_polls
from mailferry.migrate.model import Migration

POP3_PORTS = {110, 995}
IMAP_PORTS = {143, 993}
UNSUPPORTED_PROTOCOLS = {"pop2", "etrn", "odmr", "kpop", "sdps"}


def _protocol(value: str, port: int | None, where: str, migration: Migration) -> tuple[str, bool] | None:
    """(kind, apop) or None when mailferry cannot fetch with it."""
    proto = value.lower()
    if proto in ("pop3", "apop", "rpop"):
        return "pop3", proto == "apop"
    if proto == "imap":
        return "imap", False
    if proto in UNSUPPORTED_PROTOCOLS:
        migration.note(where, f"protocol {value} is not supported: entry left out")
        return None
    guessed = "pop3" if port in POP3_PORTS else "imap"
    migration.note(where, f"protocol {value or 'auto'}: chose {guessed}; check it")
    return guessed, False


def _address(local: str, domain: str | None, where: str, migration: Migration) -> str:
    if "@" in local:
        return local.lower()
    if domain is None:
        migration.note(where, f"local name {local!r} has no domain: pass --domain")
        return f"{local.lower()}@example.invalid"
    return f"{local.lower()}@{domain}"


def _tls(options: dict[str, Any], where: str, migration: Migration) -> str:
    if options.get("ssl"):
        return "implicit"
    if "sslproto" in options and options["sslproto"] == "":
        migration.note(
            where,
            "fetchmail talked in plain text (sslproto ''); mailferry asks for STARTTLS: set tls = 'none' "
            "and allow_plaintext_login = true only if the server has no TLS at all",
        )
    elif "sslproto" not in options:
        migration.note(
            where, "fetchmail would fall back to plain text without STARTTLS; mailferry requires it"
        )
    return "starttls"


def _one(poll: Poll, user: Entry, migration: Migration, daemon: int | None, domain: str | None) -> None:
    options = {**poll.server.options, **user.options}
    negated = poll.server.negated | user.negated
    where = f"line {user.line} (poll {poll.name}, user {options.get('user', '')})"
    port = int(options["port"]) if str(options.get("port", "")).isdigit() else None
    if "service" in options and port is None:
        migration.note(where, f"service {options['service']!r}: set port")
    protocol = _protocol(str(options.get("proto") or options.get("protocol") or ""), port, where, migration)
    if protocol is None:
        return
    kind, apop = protocol
    host = str(options.get("via") or poll.name)
    username = str(options.get("user", ""))
    local = [str(name) for name in options.get("local", [])]
    multidrop = "*" in local or len(local) > 1 or bool(options.get("localdomains"))
    auth_kind = str(options.get("auth") or options.get("authenticate") or "password").lower()
    source: dict[str, Any] = {
        "id": migration.source_id(host, username),
        "kind": kind,
        "mode": "global" if multidrop else "personal",
        "host": host,
        "tls": _tls(options, where, migration),
        "username": username,
    }
    if port is not None:
        source["port"] = port
    if auth_kind in ("xoauth2", "oauthbearer"):
        source["auth"] = {
            "kind": "oauth2-command",
            "mechanism": auth_kind.upper(),
            "command": ["CHANGE-ME-token-helper"],
        }
        migration.note(where, f"auth {auth_kind}: set auth.command to the program that prints the token")
    else:
        if auth_kind not in ("password", "any", "cram-md5"):
            migration.note(where, f"auth {auth_kind}: mailferry logs in with the password")
        source["auth"] = {"kind": "password", "password": migration.secret(host, username)}
        if apop:
            source["auth"]["apop"] = True
    if multidrop:
        if "envelope" in negated:
            source["envelope_headers"] = []
            source["guess_from_headers"] = True
            migration.note(where, "no envelope: recipients are guessed from To/Cc, as fetchmail did")
        elif "envelope" in options:
            source["envelope_headers"] = [options["envelope"]]
            if options.get("envelope_count"):
                source["trusted_occurrence"] = int(options["envelope_count"]) + 1
        named = [name for name in local if name != "*"]
        if named:
            migration.note(
                where,
                f"local names {', '.join(named)}: a global mailbox delivers to every address of the "
                "accepted domains; map names that differ with aliases or address_map",
            )
    else:
        source["deliver_to"] = _address(local[0] if local else username, domain, where, migration)
        migration.add_domain(source["deliver_to"].rsplit("@", 1)[1])
    if options.get("keep"):
        if kind == "pop3":
            source["leave_on_server"] = True
        else:
            source["after_fetch"] = "seen"
    if options.get("folder"):
        if kind == "imap":
            source["folders"] = [str(f) for f in options["folder"]]
        else:
            migration.note(where, "folder is IMAP only: left out")
    if str(options.get("limit", "")).isdigit() and int(options["limit"]) > 0:
        source["max_message_size"] = int(options["limit"])
    if str(options.get("fetchlimit", "")).isdigit() and int(options["fetchlimit"]) > 0:
        source["max_messages_per_pass"] = int(options["fetchlimit"])
    if str(options.get("timeout", "")).isdigit():
        source["timeout"] = f"{int(options['timeout'])}s"
    interval = int(options["interval"]) if str(options.get("interval", "")).isdigit() else 1
    if daemon:
        source["poll_interval"] = f"{daemon * interval}s"
    if options.get("sslcertfile"):
        source["ca_file"] = str(options["sslcertfile"])
    if "sslcertck" in negated:
        migration.note(where, "no sslcertck: mailferry always verifies certificates (ca_file adds a CA)")
    if poll.skipped:
        source["enabled"] = False
    if options.get("fetchall"):
        migration.note(
            where, "fetchall: mailferry fetches every message it has not fetched before, seen or not"
        )
    delivery = sorted(k for k in options if k in DELIVERY)
    if delivery:
        migration.note(where, f"{', '.join(delivery)}: delivery goes to the tenant's target instead")
    ignored = sorted(k for k in options if k in IGNORED)
    if ignored:
        migration.note(where, f"{', '.join(ignored)}: not carried over")
    migration.sources.append(source)


def map_polls(polls: list[Poll], migration: Migration, *, daemon: int | None, domain: str | None) -> None:
    for poll in polls:
        if not poll.users:
            migration.note(f"line {poll.server.line} (poll {poll.name})", "no user: entry left out")
        for user in poll.users:
            _one(poll, user, migration, daemon, domain)


def read_fetchmailrc(text: str, origin: str, *, domain: str | None = None) -> Migration:
    """Every poll entry of ``text`` as mailferry sources; ``domain`` completes local names."""
    migration = Migration(origin)
    if domain:
        migration.add_domain(domain)
    polls, daemon = read_polls(text, migration)
    for poll in polls:
        for entry in (poll.server, *poll.users):
            for name in entry.options.get("localdomains", []):
                migration.add_domain(name)
    map_polls(polls, migration, daemon=daemon, domain=migration.domains[0] if migration.domains else None)
    return migration
