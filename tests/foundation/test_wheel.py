"""The folder-to-namespace mapping works from a built wheel, not only from the editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, mailferry, mailferry.producers, mailferry.streams, mailferry.consumers, mailferry.schemas
from importlib import resources
from mailferry.schemas import codec, RAW_MESSAGE
from mailferry.kafka.embedded import _asset
print(json.dumps({
    "mailferry": mailferry.__file__,
    "producers": mailferry.producers.__file__,
    "schemas": mailferry.schemas.__file__,
    "fingerprint": codec(RAW_MESSAGE).fingerprint.hex(),
    "pom": "kafka_2.13" in _asset("pom.xml"),
    "history": resources.files("mailferry.schemas").joinpath("history", "raw_message", "v1.avsc").is_file(),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("mailferry-*.whl")
    return path


def test_wheel_holds_only_the_mailferry_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"mailferry", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for expected in (
        "mailferry/producers/__init__.py",
        "mailferry/streams/__init__.py",
        "mailferry/consumers/target.py",
        "mailferry/consumers/targets/ews/target.py",
        "mailferry/consumers/targets/graph/target.py",
        "mailferry/exchange/directory.py",
        "mailferry/exchange/ews/connect.py",
        "mailferry/exchange/graph/client.py",
        "mailferry/schemas/raw_message.avsc",
        "mailferry/schemas/history/raw_message/v1.avsc",
        "mailferry/kafka/assets/pom.xml",
        "mailferry/kafka/assets/server.properties.template",
    ):
        assert expected in names
    assert not [name for name in names if "emulator" in name or "testkit" in name or "dovecot" in name]


def test_installed_wheel_imports_every_stage(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    import json

    info = json.loads(result.stdout)
    for key in ("mailferry", "producers", "schemas"):
        assert info[key].startswith(str(site)), info
    assert info["producers"].endswith("mailferry/producers/__init__.py")
    assert len(info["fingerprint"]) == 16
    assert info["pom"] and info["history"]
