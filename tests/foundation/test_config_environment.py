"""Kafka settings from ``MAILFERRY_KAFKA_*`` environment variables, over the file's ``[kafka]``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config import load_config
from mailferry.errors import ConfigError


def test_environment_sets_kafka_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = ["file:9092"]\ntopic_prefix = "fromfile"\n', encoding="utf-8"
    )
    monkeypatch.setenv("MAILFERRY_KAFKA_BOOTSTRAP_SERVERS", "k1:9093, k2:9093")
    monkeypatch.setenv("MAILFERRY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MAILFERRY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("MAILFERRY_KAFKA_SASL_USERNAME", "mf")
    monkeypatch.setenv("MAILFERRY_KAFKA_SASL_PASSWORD", "env:MF_KAFKA_PASSWORD")
    kafka = load_config(path, check_secrets=False).kafka
    assert kafka.bootstrap_servers == ["k1:9093", "k2:9093"]
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "mf",
    )
    assert kafka.sasl_password is not None and kafka.sasl_password.reference == "env:MF_KAFKA_PASSWORD"
    assert kafka.topic_prefix == "fromfile"  # what the environment does not set stays the file's


def test_environment_applies_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFERRY_KAFKA_TOPIC_PREFIX", "fromenv")
    assert load_config(None).kafka.topic_prefix == "fromenv"
    listed = CliRunner().invoke(app, ["topics", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("fromenv.")


def test_a_bad_environment_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFERRY_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError) as raised:
        load_config(None)
    assert "kafka.security_protocol" in str(raised.value)
