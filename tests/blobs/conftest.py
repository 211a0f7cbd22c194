"""A real s3proxy for the session, and one store of each kind over real servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from mailferry.blobs import BlobStore, LocalBlobStore
from mailferry.blobs.kafka import KafkaBlobStore
from mailferry.blobs.s3 import S3BlobStore
from mailferry.config.kafka import KafkaConfig
from mailferry.config.models import S3BlobConfig
from mailferry.config.types import SecretRef
from mailferry_testkit.s3proxy import S3Proxy

from ..topics import create_topics


@pytest.fixture(scope="session")
def s3proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Proxy]:
    with S3Proxy(tmp_path_factory.mktemp("s3proxy")) as server:
        yield server


def s3_config(server: S3Proxy, bucket: str, **extra: object) -> S3BlobConfig:
    return S3BlobConfig(
        bucket=bucket,
        endpoint_url=server.endpoint,
        access_key_id=SecretRef.plaintext(server.access_key),
        secret_access_key=SecretRef.plaintext(server.secret_key),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def s3_store(s3proxy: S3Proxy, tmp_path: Path) -> Iterator[S3BlobStore]:
    bucket = f"b{uuid.uuid4().hex[:12]}"
    config = s3_config(s3proxy, bucket, part_size="5MiB")
    boto3.client(
        "s3",
        endpoint_url=s3proxy.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3proxy.access_key,
        aws_secret_access_key=s3proxy.secret_key,
    ).create_bucket(Bucket=bucket)
    store = S3BlobStore(config, spool_dir=tmp_path / "spool")
    yield store
    store.close()


@pytest.fixture
def kafka_store(kafka_config: KafkaConfig, tmp_path: Path) -> Iterator[KafkaBlobStore]:
    create_topics(kafka_config, 1)
    store = KafkaBlobStore(
        kafka_config,
        list(kafka_config.bootstrap_servers),
        chunk_size=256 * 1024,
        spool_dir=tmp_path / "spool",
    )
    yield store
    store.close()


@pytest.fixture(params=["local", "kafka", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    store: BlobStore = request.getfixturevalue(f"{request.param}_store")
    return store
