"""A replay with bypass-dedup tells the delivery worker so, through the delivery's flags."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailferry.blobs import LocalBlobStore
from mailferry.delivery_flags import BYPASS_DEDUP
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.streams.router import Routed, route_raw
from tests.stream.factories import DOMAIN, TRACE_KEY, config, message


def _flags(tmp_path: Path, bypass: bool) -> list[str]:
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<r1@sender.example>"))
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    raw["bypass_dedup"] = bypass
    routed = route_raw(
        raw, config=config(), blobs=blobs, origin="p.raw/0/7", now=datetime.now(UTC), trace_key=TRACE_KEY
    )
    assert isinstance(routed, Routed)
    (candidate,) = routed.candidates
    assert candidate.bypass_dedup is bypass
    return list(candidate.delivery["flags"])


def test_bypass_dedup_is_flagged_on_the_delivery(tmp_path: Path) -> None:
    assert BYPASS_DEDUP in _flags(tmp_path, bypass=True)
    assert BYPASS_DEDUP not in _flags(tmp_path, bypass=False)
