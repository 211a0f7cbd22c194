"""Blob references from a topic record are untrusted: one strict form, content checked.

A record on ``raw`` or ``deliver`` can be written by anyone with access to the topic; the
reference it carries must never name a file outside the store, and what the store returns
must be what the digest says.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from mailferry.blobs import LocalBlobStore
from mailferry.errors import PermanentError

BODY = b"Subject: large\r\n\r\n" + b"payload line\r\n" * 5000


def _reason(exc: pytest.ExceptionInfo[PermanentError]) -> str:
    return exc.value.reason_code


def _refused(store: LocalBlobStore, reference: str) -> str:
    """The reason code ``open`` refuses ``reference`` with (it must refuse)."""
    with pytest.raises(PermanentError) as exc, store.open(reference) as handle:
        handle.read()
    return _reason(exc)


def test_an_absolute_path_in_a_reference_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    store = LocalBlobStore(tmp_path / "blobs")
    assert _refused(store, f"sha256:{secret}") == "blob-ref-invalid"
    assert _refused(store, "sha256:/etc/passwd") == "blob-ref-invalid"


def test_dot_dot_in_a_reference_is_refused(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store" / "blobs")
    # the folders a crafted reference walks through, as earlier blobs could have made them
    (tmp_path / "store" / "blobs" / "aa" / "bb" / "aabb").mkdir(parents=True)
    (tmp_path / "store" / "secret.txt").write_bytes(b"outside the store")
    assert _refused(store, "sha256:aabb/../../../../secret.txt") == "blob-ref-invalid"
    assert _refused(store, "sha256:../../x") == "blob-ref-invalid"


@pytest.mark.parametrize(
    "reference",
    [
        "sha256:" + "A" * 64,  # upper-case hex
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 64 + "\n",
        "sha256:" + "g" * 64,
        "sha256:" + "\N{ARABIC-INDIC DIGIT ONE}" * 64,
        "SHA256:" + "a" * 64,
        "sha512:" + "a" * 64,
        "a" * 64,
        "",
    ],
)
def test_only_sha256_and_64_lower_case_hex_is_a_reference(tmp_path: Path, reference: str) -> None:
    store = LocalBlobStore(tmp_path)
    assert _refused(store, reference) == "blob-ref-invalid"


def test_upper_case_hex_of_a_stored_blob_is_refused(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(BODY)
    digest = ref.removeprefix("sha256:")
    upper = tmp_path / digest[:2].upper() / digest[2:4].upper()
    upper.mkdir(parents=True)
    (upper / digest.upper()).write_bytes(BODY)  # even when such a file exists
    assert _refused(store, "sha256:" + digest.upper()) == "blob-ref-invalid"


def test_a_blob_whose_content_does_not_match_its_digest_is_corrupt(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(BODY)
    digest = ref.removeprefix("sha256:")
    path = tmp_path / digest[:2] / digest[2:4] / digest
    path.write_bytes(BODY.replace(b"payload", b"PAYLOAD"))
    assert _refused(store, ref) == "blob-corrupt"
    with pytest.raises(PermanentError) as exc:
        store.read(ref)
    assert _reason(exc) == "blob-corrupt"


def test_a_streamed_read_of_a_corrupt_blob_never_yields_the_whole_body(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put(BODY)
    digest = ref.removeprefix("sha256:")
    (tmp_path / digest[:2] / digest[2:4] / digest).write_bytes(BODY[:-1] + b"!")
    received = bytearray()
    with pytest.raises(PermanentError) as exc:
        for chunk in store.iter_chunks(ref, 4096):
            received += chunk
    assert _reason(exc) == "blob-corrupt"
    assert len(received) < len(BODY)


def test_a_symlink_in_place_of_a_blob_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"a file someone linked in")
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    store = LocalBlobStore(tmp_path / "blobs")
    folder = tmp_path / "blobs" / digest[:2] / digest[2:4]
    folder.mkdir(parents=True)
    (folder / digest).symlink_to(outside)
    assert _refused(store, "sha256:" + digest) == "blob-corrupt"


def test_a_symlinked_folder_inside_the_store_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    content = b"content stored outside the blob folder"
    digest = hashlib.sha256(content).hexdigest()
    (elsewhere / digest[2:4]).mkdir(parents=True)
    (elsewhere / digest[2:4] / digest).write_bytes(content)
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / digest[:2]).symlink_to(elsewhere)
    store = LocalBlobStore(tmp_path / "blobs")
    assert _refused(store, "sha256:" + digest) == "blob-corrupt"


def test_a_good_blob_reads_back_whole_and_streamed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref, size = store.put_chunks([BODY[:1000], BODY[1000:]])
    assert ref == "sha256:" + hashlib.sha256(BODY).hexdigest() and size == len(BODY)
    assert store.read(ref) == BODY
    assert b"".join(store.iter_chunks(ref, 777)) == BODY
    with store.open(ref) as handle:
        assert handle.read() == BODY


def test_blob_files_are_0600_and_their_folders_0700(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    old = os.umask(0o022)
    try:
        ref = LocalBlobStore(root).put(BODY)
    finally:
        os.umask(old)
    digest = ref.removeprefix("sha256:")
    path = root / digest[:2] / digest[2:4] / digest
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (root, root / digest[:2], root / digest[:2] / digest[2:4]):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_exists_and_delete_refuse_a_crafted_reference(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"must survive")
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(PermanentError):
        store.delete(f"sha256:{victim}")
    assert victim.exists()
    with pytest.raises(PermanentError):
        store.exists(f"sha256:{victim}")
