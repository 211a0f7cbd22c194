"""Count string-key look-ups of record fields in production code, and how many are untyped.

Run: .venv/bin/python scripts/record_lookups.py [--list] [--root TREE]

(``--root``: another tree, e.g. ``git archive REV | tar -x -C TREE``, counted with this
tree's schemas and mypy configuration.)

A look-up is ``x["name"]`` or ``x.get("name", ...)`` where ``name`` is a field of some
``.avsc`` record. It is *untyped* when mypy types ``x`` as ``Any`` or ``dict[str, Any]`` (a
record from the codec, not a view from ``mailferry.schemas.records``). mypy builds the
installed package (as ``scripts/typecheck`` does) and keeps the type of every expression;
each look-up found in the source is matched to mypy's node by line, column and key.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from mypy import build
from mypy.config_parser import parse_config_file
from mypy.find_sources import create_source_list
from mypy.nodes import CallExpr, IndexExpr, MemberExpr, StrExpr
from mypy.options import Options
from mypy.types import AnyType, Instance, Type, get_proper_type

ROOT = Path(__file__).resolve().parents[1]


def untyped(base: Type | None) -> bool:
    proper = get_proper_type(base)
    if isinstance(proper, AnyType):
        return True
    return (
        isinstance(proper, Instance)
        and proper.type.fullname in ("builtins.dict", "typing.Mapping", "typing.MutableMapping")
        and isinstance(get_proper_type(proper.args[-1]), AnyType)
    )


def mypy_verdicts(package_root: str) -> dict[tuple[int, int, str], set[bool]]:
    """(line, column, key) of every string-key look-up mypy typed -> whether its base is untyped."""
    options = Options()
    parse_config_file(options, lambda: None, str(ROOT / "pyproject.toml"), sys.stdout, sys.stderr)
    options.export_types = True
    options.preserve_asts = True
    options.incremental = False
    cwd = os.getcwd()
    os.chdir(package_root)
    try:
        result = build.build(sources=create_source_list(["mailferry"], options), options=options)
    finally:
        os.chdir(cwd)
    verdicts: dict[tuple[int, int, str], set[bool]] = defaultdict(set)
    for node in result.types:
        if isinstance(node, IndexExpr) and isinstance(node.index, StrExpr):
            verdicts[(node.line, node.column, node.index.value)].add(untyped(result.types.get(node.base)))
        elif (
            isinstance(node, CallExpr)
            and isinstance(node.callee, MemberExpr)
            and node.callee.name == "get"
            and node.args
            and isinstance(node.args[0], StrExpr)
        ):
            key = (node.line, node.column, node.args[0].value)
            verdicts[key].add(untyped(result.types.get(node.callee.expr)))
    return verdicts


def field_names() -> set[str]:
    from mailferry.schemas.codec import SCHEMA_NAMES
    from mailferry.schemas.registry import expanded

    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "record":
                names.update(field["name"] for field in node["fields"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for schema in SCHEMA_NAMES:
        walk(expanded(schema))
    return names


def lookups(path: Path, fields: set[str]) -> list[tuple[int, int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        key = None
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)  # a look-up, not a store
            and isinstance(node.slice, ast.Constant)
        ):
            key = node.slice.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            key = node.args[0].value
        if isinstance(key, str) and key in fields:
            found.append((node.lineno, node.col_offset, key))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", action="store_true", help="print each untyped look-up")
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to count in")
    args = parser.parse_args()
    root: Path = args.root
    fields = field_names()
    with tempfile.TemporaryDirectory() as target:
        for stale in (root / "build", root / "testkit" / "build"):  # setuptools would reuse them
            shutil.rmtree(stale, ignore_errors=True)
        install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target]
        subprocess.run([*install, str(root), str(root / "testkit")], check=True, capture_output=True)
        verdicts = mypy_verdicts(target)
        total, found, unseen = 0, [], 0
        for path in sorted((Path(target) / "mailferry").rglob("*.py")):
            relative = str(path.relative_to(target))
            for line, col, key in sorted(lookups(path, fields)):
                total += 1
                verdict = verdicts.get((line, col, key))
                if verdict is None:  # code mypy does not check counts as untyped
                    unseen += 1
                    verdict = {True}
                if True in verdict:
                    found.append(f"{relative}:{line}:{col + 1} [{key!r}]")
    if args.list:
        print("\n".join(found))
    print(f"record field look-ups by string key: {total}")
    print(f"on untyped records (Any, dict[str, Any]): {len(found)} (of them not seen by mypy: {unseen})")


if __name__ == "__main__":
    main()
