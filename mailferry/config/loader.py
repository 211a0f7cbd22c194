"""Load and validate a TOML config; every problem names the file, the line and the field."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mailferry.config.environment import with_kafka_environment
from mailferry.config.fence import fence_problems
from mailferry.config.locate import LineIndex, format_loc
from mailferry.config.models import MailferryConfig
from mailferry.config.viability import viability_problems
from mailferry.errors import ConfigError

_FRIENDLY = {
    "extra_forbidden": "unknown key",
    "missing": "required field is missing",
}


def load_config(path: Path | str | None, *, check_secrets: bool = True) -> MailferryConfig:
    """The config in ``path``, or the built-in defaults (embedded Kafka) when ``path`` is None."""
    if path is None:
        return parse_config("", source="<defaults>", check_secrets=check_secrets)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, source=str(path), check_secrets=check_secrets)


def validate_file(path: Path, *, check_secrets: bool = True) -> MailferryConfig:
    """``load_config`` plus what a file meant to run the pipeline must also have
    (``viability``), every problem with its line."""
    config = load_config(path, check_secrets=check_secrets)
    found = viability_problems(config)
    if found:
        raise _report(str(path), path.read_text(encoding="utf-8"), found)
    return config


def parse_config(text: str, *, source: str = "<config>", check_secrets: bool = True) -> MailferryConfig:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    data = with_kafka_environment(data, os.environ)
    allow_plain = data.get("allow_plaintext_secrets", False) is True
    context = {"allow_plaintext_secrets": allow_plain, "check_secrets": check_secrets}
    try:
        config = MailferryConfig.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise _report(
            source, text, [(e["loc"], _FRIENDLY.get(e["type"], e["msg"])) for e in errors]
        ) from None
    fenced = fence_problems(config)
    if fenced:
        raise _report(source, text, fenced)
    return config


def _report(source: str, text: str, found: Sequence[tuple[Sequence[str | int], str]]) -> ConfigError:
    index = LineIndex(text)
    problems = []
    for loc, message in found:
        line = index.line_of(loc)
        where = f"{source}:{line}" if line is not None else source
        problems.append(f"{where}: {format_loc(loc)}: {message}")
    summary = f"{source}: {len(problems)} problem(s) in the configuration"
    return ConfigError(summary + "\n" + "\n".join(problems), problems=problems)
