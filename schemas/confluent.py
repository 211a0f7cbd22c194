"""The Confluent schema-registry wire format, for the tools a deployment already runs.

Kafka Connect's AvroConverter, ksqlDB, Flink and most SIEM connectors read Avro records as one
zero byte, the 4-byte big-endian id a schema registry gave the writer schema, then the Avro
binary body. With ``[schema_registry] url`` set, records on ``audit`` and ``deliver`` are
written that way: each schema is registered once per process and its id cached. The plain
record (one event, one delivery) is registered under its topic's subject (``<topic>-value``,
Confluent's default TopicNameStrategy, which is where ksqlDB looks); a pack of several
(``mailferry.packing``) is another record type on the same topic, which TopicNameStrategy
cannot hold (the registry would refuse it as incompatible), so its schema goes under
``<topic>-<full record name>`` (TopicRecordNameStrategy), e.g.
``mailferry.audit-io.mailferry.AuditBatch``. A deserializer needs only the id either way.

Readers accept this format and the single-object encoding alike, so a deployment can switch
either way while old records are retained; a schema id a reader has not seen is fetched from
the registry once (and a writer schema of another record name than the reader's is refused
as unknown, which is how a pack is told from a plain record). Without a registry the single-object encoding
(``mailferry.schemas.codec``) stays the default and nothing here runs.

One registry client per process (``use``): every ``codec(...)`` shares it, as they share the
schemas.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import fastavro

from mailferry.errors import PermanentError, TransientError

if TYPE_CHECKING:
    import httpx

MAGIC = b"\x00"
HEADER_SIZE = 5
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailableError(TransientError):
    """The schema registry did not answer: a write or a read of an unseen id waits for it."""


class RegistryRefusedError(PermanentError):
    """The registry refused a schema (e.g. incompatible with the subject's earlier versions)
    or does not know an id."""

    reason_code = "schema-registry-refused"


class RegistryClient:
    """The two calls of Confluent's REST API the wire format needs."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        import httpx  # only a deployment with a registry pays for the import

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers={"Accept": CONTENT_TYPE})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.request(
                method, path, json=body, headers={"Content-Type": CONTENT_TYPE} if body else None
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(f"schema registry {self.url}: {exc}") from exc
        if response.status_code >= 500:
            raise RegistryUnavailableError(f"schema registry {self.url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RegistryRefusedError(f"schema registry {self.url}{path}: {_message(response)}")
        answer: dict[str, Any] = response.json()
        return answer

    def register(self, subject: str, schema: Any) -> int:
        """The id of ``schema`` under ``subject``, registering it when it is new."""
        answer = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})
        return int(answer["id"])

    def schema(self, schema_id: int) -> Any:
        """The writer schema the registry keeps under ``schema_id``."""
        return json.loads(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])

    def close(self) -> None:
        self._http.close()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return f"HTTP {response.status_code}"


class WireFormat:
    """Which schemas are written in the wire format (by name, with their subject), the ids
    registered so far and the writer schemas read so far."""

    def __init__(self, client: RegistryClient, subjects: Mapping[str, str]) -> None:
        self.client = client
        self.subjects = dict(subjects)
        self._ids: dict[str, int] = {}
        self._writers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def writes(self, name: str) -> bool:
        return name in self.subjects

    def header(self, name: str, schema: Any) -> bytes:
        """The five bytes that start every record of schema ``name``."""
        schema_id = self._ids.get(name)
        if schema_id is None:
            with self._lock:
                schema_id = self._ids.get(name)
                if schema_id is None:
                    schema_id = self.client.register(self.subjects[name], schema)
                    self._ids[name] = schema_id
        return MAGIC + schema_id.to_bytes(4, "big")

    def registered(self, name: str) -> int | None:
        """The id this process registered ``name`` under, if it did."""
        return self._ids.get(name)

    def writer(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id``, from the registry the first time."""
        parsed = self._writers.get(schema_id)
        if parsed is None:
            parsed = fastavro.parse_schema(self.client.schema(schema_id))
            self._writers[schema_id] = parsed
        return parsed


def topic_subject(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's main record type."""
    return f"{topic}-value"


def record_subject(topic: str, schema: Mapping[str, Any]) -> str:
    """TopicRecordNameStrategy: the subject of one more record type on ``topic``."""
    return f"{topic}-{schema['namespace']}.{schema['name']}"


def schema_id(data: bytes) -> int:
    return int.from_bytes(data[1:HEADER_SIZE], "big")


_active: WireFormat | None = None


def use(wire: WireFormat | None) -> None:
    """Write (and read) through ``wire`` from now on in this process; ``None``: single-object."""
    global _active
    previous, _active = _active, wire
    if previous is not None and previous is not wire:
        previous.client.close()


def active() -> WireFormat | None:
    return _active
