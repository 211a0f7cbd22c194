"""CreateItem for large messages with a streamed request body (bounded memory).

exchangelib has no streaming request body: it base64-encodes ``mime_content`` into an lxml
tree, serialises the whole envelope to one ``bytes`` and hands that to requests, so a
message sits in memory about four times over (raw, base64, XML text, envelope). Above the
target's ``stream_threshold`` this module sends the same request with the MimeContent
streamed from the blob store instead:

- exchangelib still builds the envelope — SOAP headers (RequestServerVersion,
  ExchangeImpersonation, TimeZoneContext), SavedItemFolderId, the extended properties
  0x0E07 = 1 and 0x0E06, IsRead = false — around a unique placeholder in MimeContent;
- the serialised envelope is split at the placeholder into a head and a tail, and
  ``EnvelopeBody`` yields head, the message base64-encoded block by block while it is read,
  then tail. It is a sized, seekable file-like, so requests sends a Content-Length (no
  chunked encoding) and an NTLM handshake can rewind it and send it again;
- it goes through exchangelib's own ``CreateItem`` service, whose ``wrap`` is the only
  override (``StreamedCreateItem``, kept with every other patch in
  ``mailferry.exchange.ews.exchangelib_patches``): the session pool, credentials (basic,
  NTLM, OAuth2 with token refresh), the X-AnchorMailbox header, TLS verification, response
  parsing and the exceptions raised are exactly those of the normal path, so
  ``mailferry.exchange.ews.errors.classify`` and the ambiguous-outcome FindItem check behave
  the same for streamed and small messages.

The only hand-written part is the envelope split (in the patches module) and the
incremental base64 encoder below.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from exchangelib import Account, EWSDateTime
from exchangelib.folders import BaseFolder
from exchangelib.items import SAVE_ONLY, SEND_TO_NONE

from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.ews.items import MESSAGE_FLAGS_DELIVERED
from mailferry.consumers.targets.ews.marker import InboxMessage
from mailferry.exchange.ews.exchangelib_patches import StreamedCreateItem
from mailferry.mail import added_headers

RAW_BLOCK = 3 * 256 * 1024  # raw bytes per base64 block: a multiple of 3, so padding only at the end


class StreamSourceError(RuntimeError):
    """The message source did not hold the bytes it claimed (size changed while sending)."""


def base64_length(raw_size: int) -> int:
    return 4 * ((raw_size + 2) // 3)


class EnvelopeBody:
    """``head + base64(prefix + source) + tail`` as a sized, seekable, read-only stream.

    At most one raw block and its base64 are held at a time. ``open_source`` is called
    again after a rewind (requests-ntlm sends the body on each leg of its handshake; it seeks
    back before the second leg only, so a body read past its end starts over).
    """

    def __init__(
        self,
        head: bytes,
        tail: bytes,
        open_source: Callable[[], BinaryIO],
        source_size: int,
        prefix: bytes = b"",
    ) -> None:
        self._head = head
        self._tail = tail
        self._open_source = open_source
        self._prefix = prefix
        self._raw_size = len(prefix) + source_size
        self._b64_end = len(head) + base64_length(self._raw_size)
        self._length = self._b64_end + len(tail)
        self._pos = 0
        self._source: BinaryIO | None = None
        self._raw_read = 0
        self._encoded = b""
        self._encoded_at = 0
        self._ended = False  # a read at the end returned b"" (the consumer saw the end)

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:  # exchangelib logs the request body on errors: never the message
        return f"<streamed CreateItem envelope, {self._length} bytes>"

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(RAW_BLOCK):
            yield chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        wanted = min(max(base + offset, 0), self._length)
        self._ended = False
        if wanted < self._pos:
            self._rewind()
        if wanted >= self._b64_end:  # past the message: skip it without reading it
            self._close_source()
            self._pos = wanted
            return wanted
        while self._pos < wanted:
            self.read(min(wanted - self._pos, RAW_BLOCK))
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._length and self._ended:
            # Sent again without a rewind: requests-ntlm rewinds before its second leg but
            # not before its third, so a body read to its end starts over.
            self._rewind()
        if size is None or size < 0:
            size = self._length - self._pos
        self._ended = self._pos >= self._length
        out = bytearray()
        while len(out) < size and self._pos < self._length:
            want = size - len(out)
            if self._pos < len(self._head):
                piece = self._head[self._pos : self._pos + want]
            elif self._pos < self._b64_end:
                piece = self._next_encoded(want)
            else:
                at = self._pos - self._b64_end
                piece = self._tail[at : at + want]
            if not piece:
                raise StreamSourceError("the streamed envelope ran out before its announced length")
            out += piece
            self._pos += len(piece)
        return bytes(out)

    def close(self) -> None:
        self._close_source()

    # ---- the base64 part -----------------------------------------------------------------

    def _next_encoded(self, want: int) -> bytes:
        if self._encoded_at >= len(self._encoded):
            self._encoded = self._encode_block()
            self._encoded_at = 0
        piece = self._encoded[self._encoded_at : self._encoded_at + want]
        self._encoded_at += len(piece)
        return piece

    def _encode_block(self) -> bytes:
        raw = self._read_raw(RAW_BLOCK)
        if self._raw_read == self._raw_size and self._source is not None and self._source.read(1):
            raise StreamSourceError(f"message source holds more than the {self._raw_size} bytes announced")
        if len(raw) < RAW_BLOCK and self._raw_read != self._raw_size:
            raise StreamSourceError(f"message source ended after {self._raw_read} of {self._raw_size} bytes")
        if self._raw_read == self._raw_size:
            self._close_source()  # requests never closes a request body: do not leak the file
        return base64.b64encode(raw)

    def _read_raw(self, size: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < size:
            if self._raw_read < len(self._prefix):
                chunk = self._prefix[self._raw_read : self._raw_read + size - got]
            else:
                if self._source is None:
                    self._source = self._open_source()
                chunk = self._source.read(size - got)
                if not chunk:
                    break
            parts.append(chunk)
            got += len(chunk)
            self._raw_read += len(chunk)
        if self._raw_read > self._raw_size:
            raise StreamSourceError(f"message source holds more than the {self._raw_size} bytes announced")
        return b"".join(parts)

    def _rewind(self) -> None:
        self._close_source()
        self._pos = 0
        self._raw_read = 0
        self._encoded = b""
        self._encoded_at = 0

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


@dataclass(frozen=True)
class StreamedMessage:
    """What the streamed CreateItem sends: the source, its real size, the headers to prepend."""

    open_source: Callable[[], BinaryIO]
    size: int
    prefix: bytes
    delivered_at: datetime
    marker: str | None = None

    @classmethod
    def of(cls, item: DeliveryItem, delivered_at: datetime, marker: str | None = None) -> StreamedMessage:
        """Measures the source (the size goes into Content-Length), else trusts the record."""
        with item.open_message() as handle:
            try:
                size = handle.seek(0, 2)
            except (OSError, ValueError):
                size = item.size
        return cls(item.open_message, size, added_headers.prefix(item.add_headers), delivered_at, marker)


def create_streamed(account: Account, folder: BaseFolder, message: StreamedMessage) -> list[Any]:
    """CreateItem (SaveOnly) with a streamed MimeContent; the results as ``bulk_create`` gives them."""
    service = StreamedCreateItem(
        account=account,
        body=lambda head, tail: EnvelopeBody(head, tail, message.open_source, message.size, message.prefix),
    )
    item = InboxMessage(
        account=account,
        folder=folder,
        mime_content=service.placeholder,
        is_read=False,
        mf_message_flags=MESSAGE_FLAGS_DELIVERED,
        mf_delivery_time=EWSDateTime.from_datetime(message.delivered_at),
        mf_delivery_marker=message.marker,
    )
    return list(
        service.call(
            items=[item],
            folder=folder,
            message_disposition=SAVE_ONLY,
            send_meeting_invitations=SEND_TO_NONE,
        )
    )
