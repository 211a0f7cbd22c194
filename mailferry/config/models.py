"""The root of the configuration: one TOML file describes a whole deployment."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mailferry.config.console import ConsoleConfig
from mailferry.config.kafka import KafkaConfig, Strict
from mailferry.config.rules import RuleSet
from mailferry.config.sources import Source
from mailferry.config.targets import Target
from mailferry.config.types import ByteSize, Duration, SecretRef


def default_state_dir() -> Path:
    """``$MAILFERRY_STATE_DIR``, else ``$XDG_STATE_HOME/mailferry``, else ``~/.local/state/mailferry``."""
    explicit = os.environ.get("MAILFERRY_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "mailferry"


class Tenant(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    accepted_domains: list[str] = Field(min_length=1)
    default_mailbox: str = Field(description="postmaster: gets what nothing else resolves")
    default_target: str = Field(description="name of one of this tenant's targets")
    aliases: dict[str, str] = Field(default_factory=dict, description="alias -> primary address")
    address_map: dict[str, str] = Field(default_factory=dict, description="external -> internal")
    plus_addressing: Literal["strip", "keep"] = "strip"
    fetch_concurrency: int = Field(10, ge=1)
    delivery_concurrency: int = Field(8, ge=1)
    max_recipients_per_message: int = Field(
        500, ge=1, description="the rest get no copy of their own: the default mailbox gets one for them"
    )
    sources: list[Source] = Field(default_factory=list)
    targets: list[Target] = Field(min_length=1)
    rules: RuleSet = RuleSet()

    @model_validator(mode="after")
    def _references(self) -> Tenant:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique within a tenant")
        if self.default_target not in names:
            raise ValueError(f"default_target {self.default_target!r} is not one of {names}")
        for rule in self.rules.rules:
            if rule.target is not None and rule.target not in names:
                raise ValueError(f"rule {rule.id!r}: target {rule.target!r} is not one of {names}")
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError("source ids must be unique within a tenant")
        self.__dict__["accepted_domains"] = [d.lower().rstrip(".") for d in self.accepted_domains]
        return self

    def target(self, name: str | None = None) -> Target:
        wanted = name or self.default_target
        for target in self.targets:
            if target.name == wanted:
                return target
        raise KeyError(wanted)


class S3BlobConfig(Strict):
    """Any S3-compatible store (AWS, MinIO, Ceph, s3proxy); objects ``<prefix><hex digest>``."""

    bucket: str = Field(min_length=3)
    endpoint_url: str | None = Field(None, description="None: AWS for the region")
    region: str = "us-east-1"
    prefix: str = Field("blobs/", description="key prefix of the blobs in the bucket")
    access_key_id: SecretRef | None = Field(None, description="None: boto3's own credential chain")
    secret_access_key: SecretRef | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    part_size: ByteSize = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, description="multipart part size")
    upload_concurrency: int = Field(
        2, ge=1, le=16, description="parts in flight: memory is about this x part_size"
    )

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> S3BlobConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        return self


class KafkaBlobConfig(Strict):
    chunk_size: ByteSize = Field(
        1024 * 1024, ge=64 * 1024, description="bytes per record; capped below the topic's max message size"
    )


class BlobStoreConfig(Strict):
    """Where messages above the inline threshold live; topics carry a reference.

    ``kind`` unset means ``kafka`` when ``kafka.bootstrap_servers`` names a cluster (hosts
    share nothing else) and ``local`` with the embedded broker (one host).
    """

    kind: Literal["local", "kafka", "s3"] | None = None
    path: Path | None = Field(None, description="kind local; default: <state_dir>/blobs")
    spool_dir: Path | None = Field(None, description="temp files of kinds kafka/s3; default: system temp")
    inline_threshold: ByteSize = 512 * 1024
    kafka: KafkaBlobConfig = KafkaBlobConfig()
    s3: S3BlobConfig | None = None

    @model_validator(mode="after")
    def _s3_section(self) -> BlobStoreConfig:
        if self.kind == "s3" and self.s3 is None:
            raise ValueError("kind = 's3' needs a [blob_store.s3] section naming the bucket")
        return self


class RetryConfig(Strict):
    tiers: list[Duration] = Field(
        default_factory=lambda: [
            timedelta(minutes=1),
            timedelta(minutes=10),
            timedelta(hours=1),
            timedelta(hours=6),
        ],
        min_length=1,
    )
    horizon: Duration = timedelta(days=3)


class StreamConfig(Strict):
    dedup_window: Duration = timedelta(days=30)
    max_received_hops: int = Field(50, ge=1)
    data_dir: Path | None = Field(None, description="default: <state_dir>/stream")
    web_port: int = Field(6066, ge=0, le=65535)
    app_id: str = "mailferry-stream"
    directory_cache_ttl: Duration = timedelta(hours=1)
    trace_key: SecretRef | None = Field(
        None,
        description="signs the X-Mailferry-Trace header; the same for every stream worker of a "
        "deployment; None: generated once into <state_dir>/trace.key (0600)",
    )


class AuditIndexConfig(Strict):
    """The audit index role (``mailferry audit index``) and where ``audit trace`` finds one."""

    path: Path | None = Field(None, description="default: <state_dir>/audit-index")
    host: str = Field("127.0.0.1", description="where the index role answers lookups")
    port: int | None = Field(None, ge=0, le=65535, description="HTTP lookups; None: off")
    urls: list[str] = Field(default_factory=list, description="replicas audit trace may ask")
    purge_interval: Duration = timedelta(hours=1)
    scan_window: Duration = Field(timedelta(days=1), description="how far back a trace scans without index")


class SchemaRegistryConfig(Strict):
    """A Confluent-compatible schema registry: with ``url``, records on ``audit`` and ``deliver``
    use its wire format (schema id + Avro) so Kafka Connect, ksqlDB or a SIEM read them;
    without it, the single-object encoding. Readers accept both either way."""

    url: str | None = Field(None, description="e.g. http://registry:8081; None: off")
    timeout: Duration = timedelta(seconds=5)


Role = Literal["fetch", "stream", "deliver", "audit-index"]


class MetricsConfig(Strict):
    """``/metrics``, ``/healthz`` and ``/readyz`` of each role, on one port per process."""

    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 in a container")
    port: int | None = Field(None, ge=0, le=65535, description="every role's port; None: off")
    role_ports: dict[Role, int] = Field(
        default_factory=dict, description="a port per role, for several roles on one host"
    )
    stuck_after: Duration = Field(timedelta(minutes=2), description="/healthz fails after this silence")
    lag_interval: Duration = Field(timedelta(seconds=15), description="how often consumer lag is measured")

    def port_of(self, role: str) -> int | None:
        for name, port in self.role_ports.items():
            if name == role:
                return port
        return self.port


class LoggingConfig(Strict):
    format: Literal["text", "json"] = Field("text", description="json: one object per line")


class MailferryConfig(Strict):
    allow_plaintext_secrets: bool = False
    state_dir: Path = Field(default_factory=default_state_dir)
    kafka: KafkaConfig = KafkaConfig()
    blob_store: BlobStoreConfig = BlobStoreConfig()
    retry: RetryConfig = RetryConfig()
    stream: StreamConfig = StreamConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    audit_index: AuditIndexConfig = AuditIndexConfig()
    schema_registry: SchemaRegistryConfig = SchemaRegistryConfig()
    console: ConsoleConfig = ConsoleConfig()
    tenants: list[Tenant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tenants(self) -> MailferryConfig:
        ids = [t.id for t in self.tenants]
        if len(set(ids)) != len(ids):
            raise ValueError("tenant ids must be unique")
        return self

    @property
    def blob_kind(self) -> Literal["local", "kafka", "s3"]:
        if self.blob_store.kind is not None:
            return self.blob_store.kind
        return "kafka" if self.kafka.bootstrap_servers else "local"

    def tenant(self, tenant_id: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise KeyError(tenant_id)

    @property
    def kafka_state_dir(self) -> Path:
        return self.kafka.embedded.state_dir or self.state_dir / "kafka"

    @property
    def blob_dir(self) -> Path:
        return self.blob_store.path or self.state_dir / "blobs"

    @property
    def audit_index_dir(self) -> Path:
        return self.audit_index.path or self.state_dir / "audit-index"

    @property
    def stream_data_dir(self) -> Path:
        return self.stream.data_dir or self.state_dir / "stream"


__all__ = ["MailferryConfig", "SecretRef", "Tenant"]
