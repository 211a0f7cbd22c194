"""Record the current schemas as released versions: ``python -m mailferry.schemas.snapshot``.

Run it in a source checkout when a schema change is released; the compatibility test then
holds every later change to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mailferry.schemas.codec import schema_fingerprint
from mailferry.schemas.registry import SCHEMA_FILES, expanded, history


def main(folder: Path) -> int:
    for name in SCHEMA_FILES:
        current = expanded(name)
        released = history(name)
        if released and schema_fingerprint(released[-1][1]) == schema_fingerprint(current):
            continue
        target = folder / name / f"v{len(released) + 1}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).parent / "history"))
