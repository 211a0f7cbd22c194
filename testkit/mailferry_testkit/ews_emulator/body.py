"""Reading a request body in chunks for the EWS EMULATOR (not Microsoft Exchange).

A CreateItem of a 150 MB message is a 200 MB envelope. Parsing it whole would hold the
body, the lxml tree with a 200 MB text node and the decoded MIME at once. Instead the body
is fed to lxml's incremental parser chunk by chunk, and the text of every ``t:MimeContent``
goes to a base64 decoder as it arrives instead of into the tree. Everything else ends up in
an ordinary lxml tree, so the strict checks in ``soap`` and the operations are the same for
every request, small or streamed. The decoder is as strict as ``b64decode(validate=True)``
over the whole text: only the base64 alphabet and whitespace, padding only at the end.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from io import BufferedIOBase
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

MIME_TAG = "{http://schemas.microsoft.com/exchange/services/2006/types}MimeContent"
_WHITESPACE = b" \t\r\n"


class MimeText:
    """The decoded content of one ``t:MimeContent``, kept up to ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.error: str | None = None
        self._parts: list[bytes] = []
        self._pending = b""
        self._ended = False

    def feed(self, text: str) -> None:
        if self.error is not None:
            return
        try:
            chunk = self._pending + text.encode("ascii").translate(None, _WHITESPACE)
        except UnicodeEncodeError:
            self.error = "t:MimeContent is not base64"
            return
        if self._ended and chunk:
            self.error = "t:MimeContent has data after its base64 padding"
            return
        whole = len(chunk) // 4 * 4
        try:
            decoded = base64.b64decode(chunk[:whole], validate=True)
        except binascii.Error:
            self.error = "t:MimeContent is not base64"
            return
        self._ended = chunk[:whole].endswith(b"=")
        self._pending = chunk[whole:]
        self.size += len(decoded)
        if self.size <= self.limit:
            self._parts.append(decoded)
        else:
            self._parts.clear()

    def finish(self) -> None:
        if self.error is None and self._pending:
            self.error = "t:MimeContent is not base64 (its length is not a multiple of 4)"

    @property
    def over_limit(self) -> bool:
        return self.size > self.limit

    def value(self) -> bytes:
        """The decoded bytes; empty when over the limit (the size is still known)."""
        data = b"".join(self._parts)
        self._parts = [data]
        return data


class _Builder:
    """lxml parser target: an ordinary tree, except MimeContent text goes to ``MimeText``."""

    def __init__(self, limit: int) -> None:
        self._tree = etree.TreeBuilder()
        self._limit = limit
        self._mime: MimeText | None = None
        self.mime: dict[Any, MimeText] = {}
        self.errors: list[str] = []

    def start(self, tag: str, attrib: dict[str, str], nsmap: dict[str | None, str] | None = None) -> Any:
        if self._mime is not None:
            self.errors.append("t:MimeContent must hold text only")
        # lxml hands a target the default namespace as prefix "", its TreeBuilder wants None
        elem = self._tree.start(tag, attrib, {k or None: v for k, v in (nsmap or {}).items()})
        if tag == MIME_TAG:
            self._mime = MimeText(self._limit)
            self.mime[elem] = self._mime
        return elem

    def end(self, tag: str) -> Any:
        if tag == MIME_TAG and self._mime is not None:
            self._mime.finish()
            self._mime = None
        return self._tree.end(tag)

    def data(self, text: str) -> None:
        if self._mime is not None:
            self._mime.feed(text)
        else:
            self._tree.data(text)

    def pi(self, target: str, data: str | None = None) -> Any:
        return self._tree.pi(target, data)

    def close(self) -> Any:
        return self._tree.close()


def parse_chunks(chunks: Iterable[bytes], *, mime_limit: int) -> tuple[Any, dict[Any, MimeText]]:
    """The root element and the decoded MimeContent of each such element in it.

    Raises ``etree.XMLSyntaxError`` for malformed XML and ``ValueError`` for bad MimeContent.
    """
    builder = _Builder(mime_limit)
    parser = etree.XMLParser(
        target=builder, resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True
    )
    for chunk in chunks:
        parser.feed(chunk)
    root = parser.close()
    if builder.errors:
        raise ValueError(builder.errors[0])
    for text in builder.mime.values():
        if text.error is not None:
            raise ValueError(text.error)
    return root, builder.mime


class RequestBody:
    """The request body read in chunks (a streamed CreateItem can be 200 MB)."""

    CHUNK = 1 << 20

    def __init__(self, rfile: BufferedIOBase, length: int) -> None:
        self._rfile = rfile
        self._left = length

    def chunks(self) -> Iterator[bytes]:
        while self._left > 0:
            chunk = self._rfile.read(min(self.CHUNK, self._left))
            if not chunk:
                raise ValueError("the request body ended before its Content-Length")
            self._left -= len(chunk)
            yield chunk

    def drain(self) -> None:
        """Read what the parser did not, so the connection stays usable."""
        try:
            for _ in self.chunks():
                pass
        except ValueError:
            self._left = 0  # the client went away; the server closes the connection
