"""``[blob_store] kind`` picks the store every role opens; bad settings name their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailferry.blobs import LocalBlobStore, open_blob_store
from mailferry.blobs.kafka import KafkaBlobStore
from mailferry.blobs.s3 import S3BlobStore
from mailferry.config import parse_config
from mailferry.errors import ConfigError
from mailferry.kafka.topics import topic_specs


def test_kafka_is_the_default_with_a_cluster_and_local_with_the_embedded_broker(tmp_path: Path) -> None:
    cluster = parse_config(f'state_dir = "{tmp_path}"\n[kafka]\nbootstrap_servers = ["10.0.0.1:9092"]\n')
    assert cluster.blob_kind == "kafka"
    store = open_blob_store(cluster)
    assert isinstance(store, KafkaBlobStore) and store.servers == ["10.0.0.1:9092"]
    embedded = parse_config(f'state_dir = "{tmp_path}"\n')
    assert embedded.blob_kind == "local"
    local = open_blob_store(embedded)
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "blobs"
    chosen = parse_config(
        f'state_dir = "{tmp_path}"\n[kafka]\nbootstrap_servers = ["h:1"]\n[blob_store]\nkind = "local"\n'
    )
    assert isinstance(open_blob_store(chosen), LocalBlobStore)


def test_kind_s3_opens_the_configured_bucket(tmp_path: Path) -> None:
    config = parse_config(
        'allow_plaintext_secrets = true\n[blob_store]\nkind = "s3"\n[blob_store.s3]\nbucket = "mail-blobs"\n'
        'endpoint_url = "http://127.0.0.1:9"\naccess_key_id = "k"\nsecret_access_key = "s"\n'
    )
    store = open_blob_store(config)
    assert isinstance(store, S3BlobStore) and store.bucket == "mail-blobs" and store.prefix == "blobs/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[blob_store]\nkind = "s3"\n',
            "<config>:1: blob_store: Value error, kind = 's3' needs a [blob_store.s3]",
        ),
        (
            '[blob_store]\nkind = "nfs"\n',
            "<config>:2: blob_store.kind: Input should be 'local', 'kafka' or 's3'",
        ),
        (
            '[blob_store.s3]\nbucket = "bucket"\naccess_key_id = "env:K"\n',
            "blob_store.s3: Value error, access_key_id and secret_access_key go together",
        ),
    ],
)
def test_bad_blob_store_settings_name_the_field_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, check_secrets=False)
    assert expected in str(exc.value)


def test_the_blobs_topics_outlive_raw_and_the_dead_letters_and_are_created_with_the_rest() -> None:
    day = 24 * 3600 * 1000
    specs = {spec.logical: spec for spec in topic_specs(parse_config("").kafka, 2)}
    assert specs["blobs"].config == {
        "cleanup.policy": "delete",
        "max.message.bytes": str(8 << 20),
        "retention.ms": str(97 * day),  # raw's and deliver.dlt's 90 days + the 7-day in-flight window
    }
    assert specs["blobs.index"].config["cleanup.policy"] == "compact,delete"
    assert specs["blobs.index"].config["retention.ms"] == str(97 * day)
    longer_raw = parse_config('[kafka.topics.overrides.raw]\nretention = "180d"\n')
    assert {s.logical: s for s in topic_specs(longer_raw.kafka, 1)}["blobs"].config["retention.ms"] == str(
        187 * day
    )
    own = parse_config(
        '[kafka.topics.overrides.raw]\nretention = "30d"\n[kafka.topics.overrides.blobs]\nretention = "60d"\n'
    )
    assert {s.logical: s for s in topic_specs(own.kafka, 1)}["blobs"].config["retention.ms"] == str(60 * day)
    everything = parse_config('[kafka.topics.defaults]\nretention = "400d"\n')
    assert {s.logical: s for s in topic_specs(everything.kafka, 1)}["blobs"].config["retention.ms"] == str(
        407 * day
    )


def test_blobs_prune_with_kind_kafka_leaves_it_to_retention(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mailferry.cli.main import app

    config = tmp_path / "c.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n[kafka]\nbootstrap_servers = ["127.0.0.1:9"]\n')
    result = CliRunner().invoke(app, ["-c", str(config), "blobs", "prune"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "kind kafka" in result.output and "nothing to prune" in result.output
