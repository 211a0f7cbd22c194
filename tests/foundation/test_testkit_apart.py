"""The test kit (emulators, Dovecot, s3proxy, the demo) is a distribution apart from the runtime.

The runtime wheel must not ship it nor need it: `mailferry[test]` and `mailferry[demo]` pull it
in; everything else runs without it (and without aiosmtpd, a test tool).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TESTKIT = tomllib.loads((ROOT / "testkit" / "pyproject.toml").read_text())
TEST_ONLY = {"aiosmtpd", "mailferry_testkit"}
# The one runtime module that may name the test kit: it imports it lazily and says how to get it.
LAZY_DEMO = ROOT / "mailferry" / "cli" / "demo_cmd.py"


def runtime_sources() -> list[Path]:
    folders = PROJECT["tool"]["setuptools"]["package-dir"].values()
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_tops(path: Path) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


def test_runtime_code_imports_no_test_tool() -> None:
    sources = runtime_sources()
    assert len(sources) > 100 and LAZY_DEMO in sources
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_tops(path) & TEST_ONLY)
        for path in sources
        if path != LAZY_DEMO and imported_tops(path) & TEST_ONLY
    }
    assert offenders == {}


def test_test_tools_are_extras_only_and_the_testkit_version_moves_with_mailferry() -> None:
    runtime = " ".join(PROJECT["project"]["dependencies"])
    assert "aiosmtpd" not in runtime and "testkit" not in runtime
    version = PROJECT["project"]["version"]
    pin = f"mailferry-testkit=={version}"
    extras = PROJECT["project"]["optional-dependencies"]
    assert pin in extras["test"] and pin in extras["demo"]
    assert any(dep.startswith("aiosmtpd") for dep in extras["test"])
    assert TESTKIT["project"]["version"] == version
    assert f"mailferry=={version}" in TESTKIT["project"]["dependencies"]


class NotInstalled:
    """Answers for the test kit as Python's import system does when it is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] == "mailferry_testkit":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def test_demo_without_the_testkit_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [m for m in sys.modules if m == "mailferry_testkit" or m.startswith("mailferry_testkit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NotInstalled(), *sys.meta_path])
    result = CliRunner().invoke(app, ["demo", "--root", str(tmp_path / "demo")])
    assert result.exit_code == 1, result.output
    assert "pip install 'mailferry[demo]'" in result.output
    assert not (tmp_path / "demo").exists()
