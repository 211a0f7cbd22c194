"""POP3 wire format as pure functions: status lines, UIDL/LIST listings, dot-unstuffing.

Kept apart from the socket code so the parsing that decides what gets fetched (and what
a malformed server reply does) is tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINATOR = b"\r\n.\r\n"
MAX_NUMBER_DIGITS = 18  # a message number or size; more digits than any mailbox holds


def number(token: str | bytes) -> int | None:
    """A decimal number of ASCII digits, or None.

    ``str.isdigit`` alone accepts other scripts' digits and superscripts ('²' makes
    ``int`` raise), and ``int`` refuses over 4,300 digits; both came from server replies.
    """
    if not token or len(token) > MAX_NUMBER_DIGITS or not token.isascii() or not token.isdigit():
        return None
    return int(token)


class Pop3ProtocolError(Exception):
    """The server said something that is not POP3."""


class Pop3ErrorReply(Exception):
    """The server answered ``-ERR``."""

    def __init__(self, line: bytes) -> None:
        super().__init__(line.decode("utf-8", "replace").strip())
        self.line = line

    @property
    def code(self) -> str | None:
        """RFC 2449/3206 response code such as ``AUTH`` or ``SYS/TEMP``."""
        text = self.line[4:].lstrip()
        if text.startswith(b"[") and b"]" in text:
            return text[1 : text.index(b"]")].decode("ascii", "replace").upper()
        return None


def check_status(line: bytes) -> bytes:
    """The text after ``+OK``; raises for ``-ERR`` or anything else."""
    if line.startswith(b"+OK"):
        return line[3:].strip()
    if line.startswith(b"-ERR"):
        raise Pop3ErrorReply(line)
    if not line:
        raise Pop3ProtocolError("connection closed by the server")
    raise Pop3ProtocolError(f"unexpected reply {line[:80]!r}")


@dataclass(frozen=True)
class ListingProblem:
    """A line of a UIDL/LIST listing that could not be understood."""

    line: str
    reason: str


def parse_uidl(lines: list[bytes]) -> tuple[dict[int, str], list[ListingProblem]]:
    """``{message number: unique id}`` and the lines that did not parse.

    RFC 1939: the id is 1-70 printable ASCII characters (0x21-0x7E). A message whose line is
    broken, or whose id is shared with another message, cannot be tracked safely, so it is
    left out (never fetched, never deleted) and reported.
    """
    found: dict[int, str] = {}
    problems: list[ListingProblem] = []
    seen: dict[str, int] = {}
    for raw in lines:
        text = raw.decode("latin-1").rstrip("\r\n")
        parts = text.split(" ")
        position = number(parts[0]) if len(parts) == 2 else None
        if position is None or position < 1:
            problems.append(ListingProblem(text[:200], "not '<number> <unique-id>'"))
            continue
        uid = parts[1]
        if not 1 <= len(uid) <= 70 or any(not 0x21 <= ord(c) <= 0x7E for c in uid):
            problems.append(ListingProblem(text[:200], "unique id is not 1-70 printable characters"))
            continue
        if position in found:
            problems.append(ListingProblem(text[:200], "message number listed twice"))
            continue
        if uid in seen:
            problems.append(ListingProblem(text[:200], f"unique id shared with message {seen[uid]}"))
            found.pop(seen[uid], None)
            continue
        seen[uid] = position
        found[position] = uid
    return found, problems


def parse_list(lines: list[bytes]) -> dict[int, int]:
    """``{message number: size in octets}``; lines that do not parse are ignored (UIDL decides)."""
    sizes: dict[int, int] = {}
    for raw in lines:
        parts = raw.split()
        if len(parts) >= 2:
            position, size = number(parts[0]), number(parts[1])
            if position is not None and size is not None:
                sizes[position] = size
    return sizes


class DotUnstuffer:
    """Turns the bytes of one multi-line reply into the message, chunk by chunk.

    ``feed`` returns the message bytes that are certain so far; once the terminating
    ``CRLF.CRLF`` is seen, ``done`` is set and ``rest`` holds whatever followed it (the start
    of the next pipelined reply). Only whole lines are unstuffed, so a ``..`` split across two
    reads is still handled, and memory stays at one read plus one partial line.
    """

    def __init__(self) -> None:
        self._carry = b"\r\n"  # a virtual line end before the first line
        self._first = True
        self.done = False
        self.rest = b""

    def _emit(self, data: bytes) -> bytes:
        data = data.replace(b"\r\n..", b"\r\n.")
        if self._first:
            self._first = False
            data = data[2:]
        return data

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            raise ValueError("reply already complete")
        buf = self._carry + chunk
        end = buf.find(TERMINATOR)
        if end >= 0:
            self.done = True
            self.rest = buf[end + len(TERMINATOR) :]
            self._carry = b""
            return self._emit(buf[: end + 2])
        cut = buf.rfind(b"\r\n")
        if cut <= 0:
            if len(buf) <= 4096:
                self._carry = buf
                return b""
            cut = len(buf) - 1  # a long line without line ends: keep only a possible '\r'
        self._carry = buf[cut:]
        return self._emit(buf[:cut])
