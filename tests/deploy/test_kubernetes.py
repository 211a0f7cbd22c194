"""deploy/kubernetes: core kinds valid for Kubernetes (kubernetes-validate), Strimzi kinds valid
for the fields we use (tests/deploy/strimzi_schema.py), and the committed Strimzi resources equal
to what ``mailferry topics manifest`` generates from the same config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mailferry.config import load_config
from mailferry.kafka.strimzi import ROLE_ACCESS, spec_of, strimzi_resources
from mailferry.kafka.topics import topic_specs
from mailferry.streams.faust_settings import app_id, dedup_changelog_spec
from tests.deploy.strimzi_schema import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
KUBERNETES_VERSION = "1.30"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization(folder: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def base_resources() -> list[dict[str, Any]]:
    return [doc for name in kustomization(BASE)["resources"] for doc in documents(BASE / name)]


def test_core_kinds_are_valid_kubernetes() -> None:
    deployments = [d for d in base_resources() if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "mailferry-fetch",
        "mailferry-stream",
        "mailferry-deliver",
        "mailferry-audit-index",
    }
    for doc in deployments:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_deployment_is_refused() -> None:
    broken = next(d for d in base_resources() if d["kind"] == "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = [9464]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_role_has_requests_probes_config_and_secret_references() -> None:
    config = load_config(BASE / "mailferry.toml", check_secrets=False)
    users = {d["metadata"]["name"] for d in documents(BASE / "strimzi.yaml") if d["kind"] == "KafkaUser"}
    for doc in (d for d in base_resources() if d["kind"] == "Deployment"):
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == config.metrics.port
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["config"]["configMap"]["name"] == "mailferry-config"
        role = doc["metadata"]["name"].removeprefix("mailferry-")
        env = {e["name"]: e for e in container["env"]}
        # the role's own KafkaUser: the one name given as a value, it is no secret
        assert env.pop("MAILFERRY_KAFKA_SASL_USERNAME")["value"] == f"mailferry-{role}"
        assert f"mailferry-{role}" in users
        for entry in env.values():  # secrets only by reference, never a value
            assert "value" not in entry and "secretKeyRef" in entry["valueFrom"]
        assert env["KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"mailferry-{role}"
        assert container["args"][:2] == ["-c", "/etc/mailferry/config/mailferry.toml"]
        assert " ".join(container["args"][2:]) == role.replace("-", " ")
    assert config.metrics.host == "0.0.0.0"
    generator = kustomization(BASE)["configMapGenerator"][0]
    assert generator["name"] == "mailferry-config" and generator["files"] == ["mailferry.toml"]


@pytest.mark.parametrize("overlay", ["small", "production"])
def test_overlays_refer_to_what_the_base_has(overlay: str) -> None:
    folder = K8S / "overlays" / overlay
    spec = kustomization(folder)
    assert spec["resources"] == ["../../base"]
    names = {d["metadata"]["name"] for d in base_resources()}
    assert {r["name"] for r in spec.get("replicas", [])} <= names
    for patch in spec.get("patches", []):
        for doc in documents(folder / patch["path"]):
            assert doc["metadata"]["name"] in names
            role = doc["metadata"]["name"].removeprefix("mailferry-")
            assert [c["name"] for c in doc["spec"]["template"]["spec"]["containers"]] == [role]


def test_strimzi_resources_match_their_schema() -> None:
    strimzi = documents(BASE / "strimzi.yaml")
    assert {d["kind"] for d in strimzi} == {"KafkaTopic", "KafkaUser"}
    for doc in strimzi:
        jsonschema.validate(doc, SCHEMAS[doc["kind"]])
    typo = next(d for d in strimzi if d["kind"] == "KafkaTopic")
    typo["spec"]["replicationFactor"] = typo["spec"].pop("replicas")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, SCHEMAS["KafkaTopic"])


def test_committed_strimzi_file_is_what_the_command_generates() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "mailferry", "-c", str(BASE / "mailferry.toml"), "topics", "manifest"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert generated == (BASE / "strimzi.yaml").read_text(encoding="utf-8"), (
        "deploy/kubernetes/base/strimzi.yaml is stale: regenerate it (deploy/kubernetes/README.md)"
    )


def test_kafka_topics_carry_exactly_the_settings_topics_ensure_applies() -> None:
    config = load_config(BASE / "mailferry.toml", check_secrets=False)
    ensured = {
        (s.name, s.partitions, s.replication_factor, tuple(sorted(s.config.items())))
        for s in [*topic_specs(config.kafka, len(config.retry.tiers)), dedup_changelog_spec(config)]
    }
    manifest = set()
    for doc in documents(BASE / "strimzi.yaml"):
        if doc["kind"] == "KafkaTopic":
            name, partitions, replicas, settings = spec_of(doc)
            manifest.add((name, partitions, replicas, tuple(sorted(settings.items()))))
    assert manifest == ensured


def test_role_users_get_only_what_the_role_needs() -> None:
    config = load_config(BASE / "mailferry.toml", check_secrets=False)
    users = {d["metadata"]["name"]: d for d in strimzi_resources(config, "c") if d["kind"] == "KafkaUser"}
    assert set(users) == {f"mailferry-{role}" for role in ROLE_ACCESS}

    def allowed(user: str, topic: str) -> set[str]:
        acls = users[user]["spec"]["authorization"]["acls"]
        return {
            op
            for acl in acls
            if acl["resource"]["type"] == "topic"
            and (
                acl["resource"]["name"] == topic
                or (acl["resource"]["patternType"] == "prefix" and topic.startswith(acl["resource"]["name"]))
            )
            for op in acl["operations"]
        }

    assert allowed("mailferry-audit-index", "mailferry.audit") == {"Read", "Describe"}
    assert not allowed("mailferry-audit-index", "mailferry.raw")
    assert "Read" not in allowed("mailferry-fetch", "mailferry.deliver")
    assert "Write" in allowed("mailferry-fetch", "mailferry.raw")
    assert "Read" in allowed("mailferry-deliver", "mailferry.deliver.retry.3")
    assert "Write" not in allowed("mailferry-stream", "mailferry.deliver.ledger")
    changelog = dedup_changelog_spec(config).name
    assert changelog == "mailferry.mailferry-stream-dedup-changelog"  # what Faust names it
    assert "All" in allowed("mailferry-stream", changelog)
    assert not allowed("mailferry-deliver", changelog)
    stream_groups = {
        acl["resource"]["name"]
        for acl in users["mailferry-stream"]["spec"]["authorization"]["acls"]
        if acl["resource"]["type"] == "group"
    }
    assert stream_groups == {app_id(config)}  # the group Faust joins
