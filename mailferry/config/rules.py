"""Routing rules for global mailboxes: ordered conditions on headers and size."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailferry.config.kafka import Strict
from mailferry.config.types import ByteSize


class Condition(Strict):
    header: str | None = Field(None, description="any header name: Subject, Cc, List-Id, ...")
    contains: str | None = None
    regex: str | None = None
    case_sensitive: bool = False
    size_over: ByteSize | None = None
    size_under: ByteSize | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        header_test = self.contains is not None or self.regex is not None
        if self.header and not header_test:
            raise ValueError("a header condition needs contains or regex")
        if header_test and not self.header:
            raise ValueError("contains/regex need a header")
        if not header_test and self.size_over is None and self.size_under is None:
            raise ValueError("a condition needs a header test or a size test")
        return self


class Rule(Strict):
    id: str
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(min_length=1)
    action: Literal["deliver-to", "copy-to", "drop", "add-header"]
    to: list[str] = Field(default_factory=list, description="deliver-to / copy-to addresses")
    header_name: str | None = None
    header_value: str | None = None
    target: str | None = Field(
        None, description="deliver-to / copy-to: deliver with this target of the tenant, not its default"
    )
    sources: list[str] = Field(default_factory=list, description="limit to these source ids")

    @model_validator(mode="after")
    def _action_args(self) -> Rule:
        if self.action in ("deliver-to", "copy-to") and not self.to:
            raise ValueError(f"action {self.action} needs to = [...]")
        if self.action == "add-header" and not (self.header_name and self.header_value is not None):
            raise ValueError("action add-header needs header_name and header_value")
        return self


class RuleSet(Strict):
    mode: Literal["first-match", "all-match"] = "first-match"
    rules: list[Rule] = Field(default_factory=list)
