"""What every CLI command shares: the loaded config and how to reach Kafka."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mailferry.errors import SetupError

if TYPE_CHECKING:  # imported when used: every command imports this module (start-up time)
    from mailferry.config import MailferryConfig
    from mailferry.kafka.embedded import EmbeddedBroker


@dataclass
class CliContext:
    config_path: Path | None
    _config: MailferryConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> MailferryConfig:
        """The config, secrets unread: a command reads a secret only when it opens the connection
        that needs it, so read-only commands run on a host that has Kafka access only. With the
        embedded broker, its generated client login is applied."""
        if self._config is None:
            from mailferry.config import load_config
            from mailferry.kafka.credentials import BrokerCredentials

            config = load_config(self.config_path, check_secrets=False)
            if config.kafka.uses_embedded:
                login = BrokerCredentials(config.kafka_state_dir).apply(config.kafka)
                config = config.model_copy(update={"kafka": login})
            if config.schema_registry.url:
                use_schema_registry(config)
            self._config = config
        return self._config

    def check_secrets(self) -> None:
        """For the roles: stop at start-up, naming file, line and field, when a secret cannot be read."""
        if self.config_path is not None:
            from mailferry.config import load_config

            load_config(self.config_path, check_secrets=True)

    def embedded_broker(self) -> EmbeddedBroker:
        from mailferry.kafka.embedded import EmbeddedBroker

        config = self.config
        return EmbeddedBroker(config.kafka.embedded, config.kafka_state_dir)

    def bootstrap_servers(self) -> list[str]:
        """The configured cluster, or the running embedded broker's address."""
        kafka = self.config.kafka
        if kafka.bootstrap_servers:
            return list(kafka.bootstrap_servers)
        broker = self.embedded_broker()
        state = broker.running_state()
        if state is None:
            raise SetupError(
                "no Kafka is configured and the embedded broker is not running: "
                "start it with `mailferry kafka start` (or use `mailferry run`)"
            )
        return [state.address]


def use_schema_registry(config: MailferryConfig) -> None:
    """Every command and role of this process writes ``audit`` and ``deliver`` records in the
    registry's wire format: plain records under their topic's subject (``<topic>-value``),
    packs under ``<topic>-<batch record name>`` (``mailferry.schemas.confluent``)."""
    from mailferry.kafka.topics import AUDIT, DELIVER, full_name
    from mailferry.packing import AUDIT_PACK, DELIVERY_PACK
    from mailferry.schemas import confluent
    from mailferry.schemas.registry import expanded

    settings = config.schema_registry
    assert settings.url is not None
    client = confluent.RegistryClient(settings.url, timeout=settings.timeout.total_seconds())
    subjects = {}
    for logical, pack in ((AUDIT, AUDIT_PACK), (DELIVER, DELIVERY_PACK)):
        topic = full_name(config.kafka, logical)
        subjects[pack.single] = confluent.topic_subject(topic)
        subjects[pack.batch] = confluent.record_subject(topic, expanded(pack.batch))
    confluent.use(confluent.WireFormat(client, subjects))
