"""Mail addresses as routing compares them, and the address lists that carry them.

Canonical form: ``local@domain`` in lower case (Exchange compares addresses without case),
the domain in its ASCII (IDNA 2008 / UTS #46) form so that ``müller.example`` in a header
and ``xn--mller-kva.example`` in the config are one domain.

Address lists are split by hand. ``email.utils.getaddresses`` recurses once per nested
comment (500 ``(`` raise ``RecursionError``) and, given several values, lets an unclosed
comment in one swallow the next; the ``email.headerregistry`` parser has had quadratic
cases. The splitter here is one pass over tokens (runs of ordinary characters matched by a
single character class, specials one at a time) with a depth counter for comments, so it
is linear and cannot recurse. It only has to find the addr-specs: display names, comments
and group names are skipped, and an entry that is not one valid address is left out and
reported, never guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

MAX_ADDRESS = 320
_LOCAL_OK = re.compile(r"[^\s<>()\[\],;:\\\"@]+")
_LABEL_OK = re.compile(r"[a-z0-9_-]{1,63}")
_TOKEN = re.compile(r'[^\\"()<>\[\],:;]+|\\.?|.', re.DOTALL)
_FOR = re.compile(r"\bfor(?=\s)", re.IGNORECASE)
_SPACE = re.compile(r"\s*")
_RUN = re.compile(r"[^\s<>;]*")
# a list whose every entry is a plain ``local@domain`` or ``name <local@domain>``: nothing the
# splitter would leave out (see ``plainly_valid``)
_PLAIN_ADDRESS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}"
_PLAIN_NAME = r'(?:[^\s\\"()<>\[\],:;@][^\\"()<>\[\],:;@]*)?'  # starts after the white space
_PLAIN_ENTRY = rf"\s*(?:{_PLAIN_ADDRESS}|{_PLAIN_NAME}<{_PLAIN_ADDRESS}>)\s*"
_PLAIN_LIST = re.compile(rf"{_PLAIN_ENTRY}(?:,{_PLAIN_ENTRY})*")
_PLAIN_MAX = 250  # shorter than any address or domain the splitter refuses for its length


def ascii_domain(domain: str) -> str | None:
    """The lower-case ASCII form of ``domain``, or None when it is not a valid host name."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or len(domain) > 253:
        return None
    if domain.isascii():
        if all(_LABEL_OK.fullmatch(label) for label in domain.split(".")):
            return domain
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
        return None


def normalise_address(address: str) -> str | None:
    """``local@domain`` in canonical form, or None for anything that is not one address."""
    candidate = address.strip().strip("<>").strip()
    if not candidate or len(candidate) > MAX_ADDRESS or candidate.count("@") != 1:
        return None
    local, domain = candidate.split("@")
    if not local or not _LOCAL_OK.fullmatch(local):
        return None
    canonical_domain = ascii_domain(domain)
    if canonical_domain is None:
        return None
    return f"{local.lower()}@{canonical_domain}"


@dataclass(frozen=True)
class AddressList:
    """The valid addresses of one address-list value, and whether anything was left out.

    ``written`` holds the same addresses as they appeared (for an SMTP envelope, where the
    local part's case is the sender's business), ``names`` their display names ('' if none).
    """

    addresses: tuple[str, ...]
    damaged: bool
    written: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


class _Splitter:
    """The state of one pass over an address list (see the module docstring)."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.written: list[str] = []
        self.names: list[str] = []
        self.name = ""
        self.damaged = False
        self.plain: list[str] = []
        self.angle: list[str] | None = None  # inside <...>
        self.routed: str | None = None  # the last completed <...>
        self.named = False  # text before a <...> (a display name) was seen

    def text(self, token: str) -> None:
        (self.plain if self.angle is None else self.angle).append(token)

    def open_angle(self) -> None:
        if self.angle is not None:
            self.damaged = True
        self.name = " ".join("".join(self.plain).split()).replace('"', "")
        self.named = self.named or bool(self.name)
        self.plain, self.angle = [], []

    def close_angle(self) -> None:
        if self.angle is None:
            self.damaged = True
            return
        self.routed, self.angle = "".join(self.angle), None

    def end_entry(self) -> None:
        if self.angle is not None:  # an unclosed <...>: take what is there, but say so
            self.damaged = True
            self.close_angle()
        # an obsolete source route (<@a,@b:x@y>) is dropped
        candidate = "".join(self.plain).strip() if self.routed is None else self.routed.rpartition(":")[2]
        if candidate or self.routed or self.named:  # "<>" is the null sender, not damage
            address = normalise_address(candidate)
            if address is None:
                self.damaged = True
            else:
                self.found.append(address)
                self.written.append(candidate.strip().strip("<>").strip())
                self.names.append(self.name)
        self.plain, self.routed, self.named, self.name = [], None, False, ""


def parse_address_list(value: str) -> AddressList:
    """Every valid address in an address-list value (To, Cc, Delivered-To ...)."""
    state = _Splitter()
    depth = 0  # comment nesting
    quoted = literal = False
    for token in _TOKEN.findall(value):
        if depth:
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
        elif quoted:
            state.text(token)
            quoted = token != '"'
        elif literal:
            state.text(token)
            literal = token != "]"
        elif token == "(":
            depth = 1
        elif token == '"':
            state.text(token)
            quoted = True
        elif token == "[":
            state.text(token)
            literal = True
        elif token == "<":
            state.open_angle()
        elif token == ">":
            state.close_angle()
        elif token in (",", ";") and state.angle is None:
            state.end_entry()
        elif token == ":" and state.angle is None:  # a group's name: not an address
            state.plain, state.named = [], False
        else:
            state.text(token)
    state.damaged = state.damaged or bool(depth) or quoted or literal
    state.end_entry()
    return AddressList(tuple(state.found), state.damaged, tuple(state.written), tuple(state.names))


def plainly_valid(value: str) -> bool:
    """True when ``value`` is plainly a list of valid addresses, so ``parse_address_list``
    would find it undamaged; False says nothing (parse it). The stream asks this of every
    address field of every message only to report defects, and most fields are plain: one
    regular-expression match instead of the splitter (tests/mail/test_properties.py checks
    that a True is never wrong)."""
    return len(value) <= _PLAIN_MAX and _PLAIN_LIST.fullmatch(value) is not None


def addresses_in(value: str) -> list[str]:
    """The valid addresses of an address-list value, in order (damaged entries left out)."""
    return list(parse_address_list(value).addresses)


def received_for(value: str) -> str | None:
    """The recipient of a ``Received: ... for <addr>;`` clause, if the header has one.

    The first ``for`` followed by white space and a run (optionally in ``<``) that holds an
    ``@`` with something on both sides decides; the run ends at white space, ``<``, ``>``
    or ``;``, and must not run into a ``<``. Scanned by hand: the regular expression this
    replaces backtracked quadratically (24 KB cost ~18 s).
    """
    for match in _FOR.finditer(value):
        start = _end_of(_SPACE, value, match.end())
        if value.startswith("<", start):
            start = _end_of(_SPACE, value, start + 1)
        end = _end_of(_RUN, value, start)
        run = value[start:end]
        at = run.find("@", 1)
        if at < 0 or at > len(run) - 2 or value.startswith("<", end):
            continue
        return normalise_address(run)
    return None


def _end_of(pattern: re.Pattern[str], value: str, position: int) -> int:
    match = pattern.match(value, position)
    return match.end() if match is not None else position


def first_address(values: list[str]) -> str | None:
    """The first valid address in any of ``values`` (e.g. Return-Path, Sender, From), as written."""
    for value in values:
        found = parse_address_list(value).written
        if found:
            return found[0]
    return None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def strip_plus(address: str, separator: str = "+") -> tuple[str, str | None]:
    """(address without the ``+tag``, the tag) for plus-addressing."""
    local, _, domain = address.rpartition("@")
    base, sep, tag = local.partition(separator)
    if not sep or not base:
        return address, None
    return f"{base}@{domain}", tag
