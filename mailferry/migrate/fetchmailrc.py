"""fetchmail's run-control file (``~/.fetchmailrc``) read into a ``Migration``.

No maintained Python library parses this grammar, so this is a small hand-written reader
after fetchmail's manual: tokens are words or quoted strings, ``#`` starts a comment,
commas, colons and semicolons separate, and the noise words (and, with, has, wants,
options) mean nothing. Anything it does not carry over is named in the result, never
silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailferry.migrate.model import Migration

NOISE = {"and", "with", "has", "wants", "options"}
FLAGS = {
    "ssl", "sslcertck", "keep", "flush", "limitflush", "fetchall", "rewrite", "stripcr", "forcecr",
    "pass8bits", "dropstatus", "dropdelivered", "mimedecode", "idle", "lmtp", "dns", "checkalias",
    "uidl", "tracepolls", "envelope", "there", "here",
}  # fmt: skip
ONE_VALUE = {
    "via", "proto", "protocol", "port", "service", "auth", "authenticate", "timeout", "qvirtual",
    "interface", "monitor", "plugin", "plugout", "principal", "esmtpname", "esmtppassword",
    "interval", "password", "pass", "sslcert", "sslkey", "sslproto", "sslcertfile", "sslcertpath",
    "sslfingerprint", "sslcommonname", "smtpaddress", "smtpname", "mda", "bsmtp", "preconnect",
    "postconnect", "limit", "warnings", "batchlimit", "fetchlimit", "fetchsizelimit", "fastuidl",
    "expunge", "properties", "user", "username",
}  # fmt: skip
LISTS = {"aka", "localdomains", "folder", "smtphost", "fetchdomains", "antispam", "is", "to"}
KEYWORDS = FLAGS | ONE_VALUE | LISTS | {"poll", "skip", "defaults", "set", "no"}
DELIVERY = {
    "smtphost", "smtpaddress", "smtpname", "mda", "bsmtp", "lmtp", "antispam", "rewrite", "stripcr",
    "forcecr", "pass8bits", "dropstatus", "dropdelivered", "mimedecode", "fetchdomains",
}  # fmt: skip
IGNORED = {
    "interface", "monitor", "plugin", "plugout", "principal", "esmtpname", "esmtppassword",
    "warnings", "batchlimit", "fetchsizelimit", "fastuidl", "expunge", "properties", "preconnect",
    "postconnect", "qvirtual", "aka", "dns", "checkalias", "uidl", "tracepolls", "flush",
    "limitflush", "sslcert", "sslkey", "sslcertpath", "sslfingerprint", "sslcommonname",
}  # fmt: skip


@dataclass(frozen=True)
class Token:
    text: str
    line: int
    quoted: bool = False

    @property
    def keyword(self) -> str | None:
        lowered = self.text.lower()
        return lowered if not self.quoted and lowered in KEYWORDS else None


def tokens(text: str) -> list[Token]:
    found: list[Token] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
            i += 1
        elif char.isspace() or char in ",:;":
            i += 1
        elif char == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif char in "'\"":
            start_line, value, i = line, [], i + 1
            while i < n and text[i] != char:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                if text[i] == "\n":
                    line += 1
                value.append(text[i])
                i += 1
            found.append(Token("".join(value), start_line, quoted=True))
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in ",:;#'\"":
                i += 1
            found.append(Token(text[start:i], line))
    return found


@dataclass
class Entry:
    """Options of one poll (server) or one user of it; users inherit the server's."""

    line: int
    options: dict[str, Any] = field(default_factory=dict)
    negated: set[str] = field(default_factory=set)


@dataclass
class Poll:
    server: Entry
    name: str
    skipped: bool
    users: list[Entry] = field(default_factory=list)


class _Reader:
    def __init__(self, text: str, migration: Migration) -> None:
        self.items = [t for t in tokens(text) if t.quoted or t.text.lower() not in NOISE]
        self.pos = 0
        self.migration = migration
        self.daemon: int | None = None
        self.defaults = Entry(0)
        self.polls: list[Poll] = []

    def _next(self) -> Token | None:
        if self.pos >= len(self.items):
            return None
        token = self.items[self.pos]
        self.pos += 1
        return token

    def _peek(self) -> Token | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def _values(self) -> list[str]:
        values = []
        while (token := self._peek()) is not None and token.keyword is None:
            values.append(token.text)
            self.pos += 1
        return values

    def read(self) -> None:
        current: Entry | None = None
        while (token := self._next()) is not None:
            word = token.keyword
            if word == "set":
                self._set(token)
            elif word in ("poll", "skip"):
                name = self._next()
                server = Entry(token.line, dict(self.defaults.options), set(self.defaults.negated))
                self.polls.append(Poll(server, name.text if name else "", word == "skip"))
                current = server
            elif word == "defaults":
                current = self.defaults
            elif current is None:
                self.migration.note(f"line {token.line}", f"{token.text!r} outside any poll entry")
            elif word in ("user", "username"):
                user = Entry(token.line)
                value = self._next()
                user.options["user"] = value.text if value else ""
                if self.polls and current is not self.defaults:
                    self.polls[-1].users.append(user)
                current = user
            else:
                self._option(token, current)

    def _set(self, token: Token) -> None:
        what = self._next()
        if what is None:
            return
        name = what.text.lower()
        if name == "daemon":
            value = self._next()
            self.daemon = int(value.text) if value and value.text.isdigit() else None
        elif name == "postmaster":
            value = self._next()
            self.migration.postmaster = value.text if value else None
        elif name == "no":
            following = self._next()
            self.migration.note(f"line {token.line}", f"set no {following.text if following else ''}")
        else:
            values = self._values() if name in {"logfile", "idfile", "pidfile", "properties"} else []
            self.migration.note(f"line {token.line}", f"set {name} {' '.join(values)}".rstrip())

    def _option(self, token: Token, entry: Entry) -> None:
        word = token.keyword
        if word == "no":
            negated = self._next()
            if negated is not None:
                entry.negated.add(negated.text.lower())
                entry.options.pop(negated.text.lower(), None)
            return
        if word == "envelope":
            values = self._values()
            if values and values[0].isdigit():
                entry.options["envelope_count"] = int(values[0])
                values = values[1:]
            entry.options["envelope"] = values[0] if values else "X-Envelope-To"
        elif word in FLAGS:
            entry.options[word] = True
            entry.negated.discard(word)
        elif word in ONE_VALUE:
            value = self._next()
            entry.options[word] = value.text if value else ""
        elif word in LISTS:
            key = "local" if word in ("is", "to") else word
            entry.options[key] = [*entry.options.get(key, []), *self._values()]
        else:
            self.migration.note(f"line {token.line}", f"{token.text!r} not understood")


def read_polls(text: str, migration: Migration) -> tuple[list[Poll], int | None]:
    """The poll entries of ``text`` and the ``set daemon`` interval."""
    reader = _Reader(text, migration)
    reader.read()
    return reader.polls, reader.daemon
