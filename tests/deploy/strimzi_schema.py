"""A JSON Schema of the Strimzi fields mailferry writes (KafkaTopic, KafkaUser, v1beta2).

Written for this project from Strimzi's documentation of those resources: Strimzi publishes no
schema artifact to fetch (io.strimzi:api on Maven Central holds Java classes only), and its CRD
files are not copied here. Only the fields ``mailferry topics manifest`` emits are described,
and unknown fields are refused, so a typo or a renamed field fails the test.
"""

from __future__ import annotations

from typing import Any

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_METADATA = {
    "type": "object",
    "required": ["name", "labels"],
    "additionalProperties": False,
    "properties": {
        "name": _NAME,
        "namespace": {"type": "string"},
        "labels": {
            "type": "object",
            "required": ["strimzi.io/cluster"],
            "additionalProperties": {"type": "string"},
        },
    },
}
_CONFIG_VALUE = ["string", "integer", "boolean"]
_RESOURCE_TYPES = ["topic", "group", "cluster", "transactionalId"]
_OPERATIONS = [
    "Read",
    "Write",
    "Create",
    "Delete",
    "Alter",
    "Describe",
    "ClusterAction",
    "AlterConfigs",
    "DescribeConfigs",
    "IdempotentWrite",
    "All",
]

KAFKA_TOPIC: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["topicName", "partitions", "replicas"],
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,249}$"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "boolean"]},
                },
            },
        },
    },
}

KAFKA_USER: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaUser"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["authentication", "authorization"],
            "additionalProperties": False,
            "properties": {
                "authentication": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": False,
                    "properties": {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                },
                "authorization": {
                    "type": "object",
                    "required": ["type", "acls"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "simple"},
                        "acls": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["resource", "operations"],
                                "additionalProperties": False,
                                "properties": {
                                    "resource": {
                                        "type": "object",
                                        "required": ["type", "name"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "type": {
                                                "enum": ["topic", "group", "cluster", "transactionalId"]
                                            },
                                            "name": {"type": "string", "minLength": 1},
                                            "patternType": {"enum": ["literal", "prefix"]},
                                        },
                                    },
                                    "operations": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {"enum": _OPERATIONS},
                                    },
                                    "host": {"type": "string"},
                                    "type": {"enum": ["allow", "deny"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

SCHEMAS = {"KafkaTopic": KAFKA_TOPIC, "KafkaUser": KAFKA_USER}
