"""Another git revision's code, runnable beside this tree's for side-by-side benchmark rows.

A benchmark that compares two revisions runs the same command twice, once with the other
revision's packages first on the child's path (``PYTHONPATH``) and the child's working folder
outside the repository (``python -m`` puts its working folder first on the path).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(revision: str, into: Path) -> Path:
    """The tree of ``revision`` arranged as the wheel installs it (``package-dir`` in pyproject)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
    tree = into / "tree"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    packages = into / "packages"
    layout = tomllib.loads((tree / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["package-dir"]
    for name, folder in sorted(layout.items()):  # parents first: "mailferry" before "mailferry.producers"
        target = packages / name.replace(".", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        (tree / folder).rename(target)
    return packages
