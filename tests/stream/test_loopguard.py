"""Loop guard: only a trace header signed with the deployment's key is obeyed (issue 11 item 3)."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailferry.blobs import LocalBlobStore
from mailferry.config.models import MailferryConfig
from mailferry.errors import ConfigError
from mailferry.mail.headers import parse_message_headers
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.streams.loopguard import TRACE_HEADER, check_loop, trace_value
from mailferry.streams.router import Rejected, Routed, route_raw
from mailferry.streams.trace_key import KEY_FILE, load_trace_key
from tests.stream.factories import DOMAIN, TRACE_KEY, config, message

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
MID = "<loop-1@sender.example>"


def _route(tmp_path: Path, data: bytes, key: bytes = TRACE_KEY) -> Routed | Rejected:
    blobs = LocalBlobStore(tmp_path / "blobs")
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"), data, blobs=blobs, inline_threshold=1 << 20
    )
    return route_raw(raw, config=config(), blobs=blobs, origin="p.raw/0/1", now=NOW, trace_key=key)


def _delivered_trace(tmp_path: Path, data: bytes) -> str:
    """The trace header value mailferry itself puts on the delivered copy of ``data``."""
    routed = _route(tmp_path, data)
    assert isinstance(routed, Routed)
    (header,) = [h for h in routed.candidates[0].delivery["add_headers"] if h["name"] == TRACE_HEADER]
    return str(header["value"])


def _is_loop(result: Routed | Rejected) -> bool:
    return isinstance(result, Rejected) and (result.error_class, result.reason_code) == ("loop", "loop-trace")


def test_a_message_mailferry_delivered_is_refused_when_it_comes_round_again(tmp_path: Path) -> None:
    original = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID))
    trace = _delivered_trace(tmp_path, original)
    assert "; key=acme/bob@acme.example/<loop-1@sender.example>;" in trace
    looped = message((TRACE_HEADER, trace), ("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID))
    assert _is_loop(_route(tmp_path, looped))


def test_a_refolded_trace_header_still_verifies(tmp_path: Path) -> None:
    original = message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID))
    refolded = _delivered_trace(tmp_path, original).replace("; ", ";\r\n\t")
    looped = message((TRACE_HEADER, refolded), ("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID))
    assert _is_loop(_route(tmp_path, looped))


@pytest.mark.parametrize(
    "forged",
    [
        "tenant=acme; mailbox=catchall; key=k",  # what a sender could write before: no MAC
        "tenant=acme; mailbox=catchall; key=k; at=2026-11-02T12:00:00+00:00; mac=" + "0" * 64,
        "tenant=acme; mac=",
        "mac=deadbeef; tenant=acme",
        "tenant=acme;;;; mac=zzé€",
        "",
    ],
)
def test_an_unsigned_or_wrongly_signed_trace_is_ignored(tmp_path: Path, forged: str) -> None:
    data = message((TRACE_HEADER, forged), ("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID))
    routed = _route(tmp_path, data)
    assert isinstance(routed, Routed)
    assert [c.delivery["recipient"] for c in routed.candidates] == [f"bob@{DOMAIN}"]


def test_a_trace_signed_with_another_key_is_ignored(tmp_path: Path) -> None:
    value = trace_value(
        tenant="acme", mailbox_id="catchall", dedup_key="k", routed_at=NOW, message_id=MID, key=b"x" * 40
    )
    data = message((TRACE_HEADER, value), ("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID))
    assert isinstance(_route(tmp_path, data), Routed)


def test_a_genuine_trace_copied_onto_another_message_is_ignored(tmp_path: Path) -> None:
    """A sender who saw a delivered copy (a forward with full headers) cannot reuse its trace
    to have new mail dead-lettered: the MAC binds the Message-ID."""
    trace = _delivered_trace(tmp_path, message(("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", MID)))
    new_mail = message(
        (TRACE_HEADER, trace), ("Delivered-To", f"bob@{DOMAIN}"), ("Message-ID", "<new@sender.example>")
    )
    assert isinstance(_route(tmp_path, new_mail), Routed)


def test_a_trace_whose_tenant_was_edited_is_ignored() -> None:
    value = trace_value(
        tenant="other", mailbox_id="m", dedup_key="k", routed_at=NOW, message_id=MID, key=TRACE_KEY
    )
    headers = parse_message_headers(message((TRACE_HEADER, value.replace("tenant=other", "tenant=acme"))))
    assert check_loop(headers, "acme", 50, message_id=MID, key=TRACE_KEY) is None
    genuine = parse_message_headers(message((TRACE_HEADER, value)))
    assert check_loop(genuine, "acme", 50, message_id=MID, key=TRACE_KEY) is None  # another tenant's
    verdict = check_loop(genuine, "other", 50, message_id=MID, key=TRACE_KEY)
    assert verdict is not None and verdict.reason_code == "loop-trace"


# -- the key -----------------------------------------------------------------------------------


def _config(tmp_path: Path, **stream: object) -> MailferryConfig:
    return MailferryConfig.model_validate({"state_dir": str(tmp_path / "state"), "stream": stream})


def test_the_key_is_generated_once_into_the_state_folder_0600(tmp_path: Path) -> None:
    first = load_trace_key(_config(tmp_path))
    path = tmp_path / "state" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_trace_key(_config(tmp_path)) == first
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILE]  # no draft left behind


def test_roles_starting_together_share_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_trace_key(_config(tmp_path)))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_trace_key(_config(tmp_path))
    os.chmod(tmp_path / "state" / KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_trace_key(_config(tmp_path))


def test_a_configured_secret_reference_is_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFERRY_TEST_TRACE_KEY", "one key for every host of this deployment")
    key = load_trace_key(_config(tmp_path, trace_key="env:MAILFERRY_TEST_TRACE_KEY"))
    assert key == b"one key for every host of this deployment"
    assert not (tmp_path / "state" / KEY_FILE).exists()
    monkeypatch.setenv("MAILFERRY_TEST_TRACE_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_trace_key(_config(tmp_path, trace_key="env:MAILFERRY_TEST_TRACE_KEY"))
