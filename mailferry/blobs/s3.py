"""Kind ``s3``: any S3-compatible store through boto3; objects ``<prefix><hex digest>``.

A put spools the content to a temp file while hashing (the key is the digest, known only
at the end), then uploads it in parts of ``part_size``, by default one part in flight: with
two (boto3's threaded transfer) a 150 MB put to s3proxy here took 44 s instead of 49 s but
its peak RSS went from 82 to 166 MB, so ``upload_concurrency`` is for fast links only.
Re-putting content already there copies the object onto itself, which renews its
LastModified: ``blobs prune`` deletes only what is both unreferenced and untouched for its
grace period, as for kind ``local``. Reads stream the object's body and are checked
against the digest before the end reaches the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mailferry.blobs.base import (
    CHUNK,
    BlobNotFoundError,
    digest_of,
    reference_of,
    verified_chunks,
)
from mailferry.blobs.spool import spool, spool_verified
from mailferry.config.models import S3BlobConfig
from mailferry.errors import CredentialsError, OperatorError, TransientError

_MISSING = {"404", "NoSuchKey", "NotFound"}
_DIGEST_CHARS = set("0123456789abcdef")


@contextmanager
def _s3_errors(action: str) -> Iterator[None]:
    """The one table of this boundary: missing is permanent; refused credentials or a missing
    bucket are the operator's to fix (the role pauses, mail waits); the rest is an outage."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise BlobNotFoundError(f"blob store s3: {action}: not found") from exc
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise CredentialsError(
                f"blob store s3: {action}: {code}", reason_code="blob-store-refused"
            ) from exc
        if code == "NoSuchBucket":
            raise OperatorError(f"blob store s3: {action}: {code}", reason_code="blob-store-refused") from exc
        raise TransientError(f"blob store s3: {action}: {code or exc}", reason_code="blob-store") from exc
    except BotoCoreError as exc:
        raise TransientError(f"blob store s3: {action}: {exc}", reason_code="blob-store") from exc


@dataclass(frozen=True)
class S3Object:
    reference: str
    key: str
    size: int
    modified: datetime


class S3BlobStore:
    def __init__(self, config: S3BlobConfig, *, spool_dir: Path | None = None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.spool_dir = spool_dir
        self._transfer = TransferConfig(
            multipart_threshold=config.part_size,
            multipart_chunksize=config.part_size,
            max_concurrency=config.upload_concurrency,
            use_threads=config.upload_concurrency > 1,
        )
        self._lock = threading.Lock()
        self._client: Any = None

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                keys: dict[str, str] = {}
                if self.config.access_key_id is not None and self.config.secret_access_key is not None:
                    keys = {
                        "aws_access_key_id": self.config.access_key_id.reveal(),
                        "aws_secret_access_key": self.config.secret_access_key.reveal(),
                    }
                verify: bool | str = self.config.verify_tls
                if self.config.verify_tls and self.config.ca_file is not None:
                    verify = str(self.config.ca_file)
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.config.endpoint_url,
                    region_name=self.config.region,
                    verify=verify,
                    config=Config(
                        s3={"addressing_style": "path"},
                        retries={"max_attempts": 3, "mode": "standard"},
                        signature_version="s3v4",
                        # the flexible checksums boto3 sends by default since 1.36 are
                        # refused by many S3-compatible servers (s3proxy: NotImplemented);
                        # content is checked against its SHA-256 digest on every read
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                    ),
                    **keys,
                )
            return self._client

    def key_of(self, reference: str) -> str:
        return self.prefix + digest_of(reference)

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        spooled = spool(chunks, self.spool_dir)
        reference = reference_of(spooled.digest)
        key = self.prefix + spooled.digest
        with spooled.file, _s3_errors(f"storing {reference}"):
            if self._refresh(key):
                return reference, spooled.size
            self.client().upload_fileobj(spooled.file, self.bucket, key, Config=self._transfer)
        return reference, spooled.size

    def _refresh(self, key: str) -> bool:
        """Renew an existing object's LastModified (a copy onto itself); False when absent."""
        try:
            self.client().copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata={"mailferry": "blob"},
            )
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
                return False
            raise
        return True

    def put(self, data: bytes) -> str:
        return self.put_chunks([data])[0]

    def _body(self, reference: str, chunk_size: int) -> Iterator[bytes]:
        with _s3_errors(f"reading {reference}"):
            body = self.client().get_object(Bucket=self.bucket, Key=self.key_of(reference))["Body"]
        try:
            while True:
                with _s3_errors(f"reading {reference}"):
                    chunk = body.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def iter_chunks(self, reference: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        digest = digest_of(reference)
        yield from verified_chunks(digest, self._body(reference, chunk_size), f"s3://{self.bucket}")

    def open(self, reference: str) -> BinaryIO:
        digest = digest_of(reference)
        return spool_verified(digest, self._body(reference, CHUNK), self.spool_dir, f"s3://{self.bucket}")

    def read(self, reference: str) -> bytes:
        with self.open(reference) as handle:
            return handle.read()

    def exists(self, reference: str) -> bool:
        try:
            with _s3_errors(f"looking up {reference}"):
                self.client().head_object(Bucket=self.bucket, Key=self.key_of(reference))
        except BlobNotFoundError:
            return False
        return True

    def delete(self, reference: str) -> None:
        with _s3_errors(f"deleting {reference}"):
            self.client().delete_object(Bucket=self.bucket, Key=self.key_of(reference))

    def list_blobs(self) -> Iterator[S3Object]:
        """Every blob object under the prefix (anything else in the bucket is left alone)."""
        paginator = self.client().get_paginator("list_objects_v2")
        with _s3_errors("listing the blobs"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", ()):
                    name = str(item["Key"])[len(self.prefix) :]
                    if len(name) == 64 and set(name) <= _DIGEST_CHARS:
                        yield S3Object(
                            reference_of(name), str(item["Key"]), int(item["Size"]), item["LastModified"]
                        )

    def modified(self, reference: str) -> datetime | None:
        try:
            with _s3_errors(f"looking up {reference}"):
                head = self.client().head_object(Bucket=self.bucket, Key=self.key_of(reference))
        except BlobNotFoundError:
            return None
        modified: datetime = head["LastModified"]
        return modified

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
