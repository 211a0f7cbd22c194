"""The one Maven step (``mailferry.maven``) with the real ``mvn``: a complete copy or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailferry.errors import SetupError
from mailferry.maven import copy_dependencies

EMPTY_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId><artifactId>nothing</artifactId><version>1</version>
</project>
"""


def test_a_pom_without_dependencies_gives_an_empty_folder_in_place(tmp_path: Path) -> None:
    target = tmp_path / "thing" / "libs"
    assert copy_dependencies(EMPTY_POM, target, what="thing 1") == target
    assert target.is_dir() and list(target.iterdir()) == []
    assert not target.with_name("libs.partial").exists()


def test_a_failed_copy_names_what_and_keeps_the_earlier_copy(tmp_path: Path) -> None:
    target = tmp_path / "thing" / "libs"
    target.mkdir(parents=True)
    (target / "earlier.jar").write_bytes(b"jar")
    with pytest.raises(SetupError, match="Maven could not fetch thing 2"):
        copy_dependencies("<project>not a pom", target, what="thing 2")
    assert (target / "earlier.jar").read_bytes() == b"jar"
