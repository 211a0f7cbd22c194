"""The layering the README's folder table promises, read from the source (every import,
also those inside functions): a stage imports the kernel, never another stage; the kernel's
Exchange access imports no stage; the delivery targets' packages form no import cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = {
    "producers": "mailferry.producers",
    "streams": "mailferry.streams",
    "consumers": "mailferry.consumers",
}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] in STAGES:
        parts[0] = STAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base])
            yield base.rstrip(".")
            yield from (f"{base}.{alias.name}" for alias in node.names)


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_stage_imports_another_stage() -> None:
    crossings = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder, own in STAGES.items()
        for path in sources(folder)
        for name in imports_of(path)
        for other in STAGES.values()
        if other != own and (name == other or name.startswith(other + "."))
    ]
    assert crossings == []


def test_exchange_access_imports_no_stage() -> None:
    crossings = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("mailferry/exchange")
        for name in imports_of(path)
        if any(name == stage or name.startswith(stage + ".") for stage in STAGES.values())
    ]
    assert crossings == []


def test_no_import_cycle_among_targets_and_exchange_access() -> None:
    paths = sources("consumers") + sources("mailferry/exchange")
    graph: dict[str, set[str]] = {module_name(p): set() for p in paths}
    for path in paths:
        graph[module_name(path)] = {name for name in imports_of(path) if name in graph}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, [*trail, nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert cycles == []
