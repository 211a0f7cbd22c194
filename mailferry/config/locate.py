"""Map a validation error's field path back to a line of the TOML source.

``tomllib`` keeps no positions and no maintained TOML library exposes them per key, so
this is a small line scanner written for the purpose. It understands table and
array-of-table headers, dotted keys and one-line inline tables, which covers how
mailferry configs are written; anything it cannot place falls back to the nearest
enclosing table's line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r'^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*='
)
_INLINE_KEY = re.compile(r'[{,]\s*([A-Za-z0-9_-]+|"[^"]*")\s*=')


def _split_key(raw: str) -> list[str]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[A-Za-z0-9_-]+', raw)
    return [p.strip("\"'") for p in parts]


class LineIndex:
    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        self._prefixes: set[Path] = {()}
        self._scan(text)

    def _record(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)
        for i in range(len(path) + 1):
            self._prefixes.add(path[:i])

    def _scan(self, text: str) -> None:
        counts: dict[Path, int] = {}
        current: Path = ()
        depth = 0
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.split("#", 1)[0] if '"' not in line and "'" not in line else line
            if depth > 0:
                depth += stripped.count("[") - stripped.count("]")
                continue
            header = _HEADER.match(line)
            if header:
                is_array = header.group(1) == "[["
                parts = _split_key(header.group(2))
                path: Path = ()
                for i, part in enumerate(parts):
                    path = (*path, part)
                    last = i == len(parts) - 1
                    if is_array and last:
                        counts[path] = counts.get(path, 0) + 1
                        path = (*path, counts[path] - 1)
                    elif path in counts:
                        path = (*path, counts[path] - 1)
                current = path
                self._record(current, number)
                continue
            key = _KEY.match(line)
            if key:
                path = (*current, *_split_key(key.group(1)))
                self._record(path, number)
                rest = line[key.end() :]
                for inline in _INLINE_KEY.finditer(rest):
                    self._record((*path, inline.group(1).strip('"')), number)
                depth = max(0, rest.count("[") - rest.count("]"))

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest part of ``loc`` that the source names."""
        path: Path = ()
        best: int | None = self.lines.get(())
        for component in loc:
            candidate = (*path, component)
            if candidate in self._prefixes:
                path = candidate
                best = self.lines.get(path, best)
        return best


_UNION_TAGS = frozenset(
    {"pop3", "imap", "ews", "graph", "smtp", "maildir", "password", "oauth2", "oauth2-command"}
)


def format_loc(loc: Sequence[str | int]) -> str:
    """``tenants[0].sources[1].host``, leaving out the union tags pydantic inserts.

    A tag is a discriminator value ('pop3', 'password') or a validator name
    ('function-after[...]'); it never ends the path, which tells it apart from a key.
    """
    out = ""
    path: Path = ()
    last = len(loc) - 1
    for position, component in enumerate(loc):
        candidate = (*path, component)
        is_tag = isinstance(component, str) and (component in _UNION_TAGS or "[" in component)
        if is_tag and position < last:
            continue
        path = candidate
        if isinstance(component, int):
            out += f"[{component}]"
        else:
            out += f".{component}" if out else component
    return out or "(top level)"
