"""Evaluating a tenant's routing rules against a message's headers and size.

Pure: the rule set comes from the config (``mailferry.config.rules``), the message from
``MessageHeaders``; the result says which rules matched, in order, so the resolver can apply
their actions and record each rule id as a reason.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mailferry.config.rules import Condition, Rule, RuleSet
from mailferry.mail.headers import MessageHeaders


@lru_cache(maxsize=1024)
def _pattern(regex: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


def condition_holds(condition: Condition, headers: MessageHeaders, size: int) -> bool:
    """True when every test of ``condition`` holds (header test and size bounds)."""
    if condition.size_over is not None and not size > condition.size_over:
        return False
    if condition.size_under is not None and not size < condition.size_under:
        return False
    if condition.header is None:
        return True
    values = headers.get_all(condition.header)
    if condition.contains is not None:
        needle = condition.contains if condition.case_sensitive else condition.contains.casefold()
        if not any(needle in (v if condition.case_sensitive else v.casefold()) for v in values):
            return False
    if condition.regex is not None:
        pattern = _pattern(condition.regex, condition.case_sensitive)
        if not any(pattern.search(v) for v in values):
            return False
    return True


def rule_matches(rule: Rule, headers: MessageHeaders, size: int, source_id: str | None) -> bool:
    if rule.sources and source_id not in rule.sources:
        return False
    results = (condition_holds(c, headers, size) for c in rule.conditions)
    return all(results) if rule.match == "all" else any(results)


def matching_rules(rules: RuleSet, headers: MessageHeaders, size: int, source_id: str | None) -> list[Rule]:
    """The rules whose conditions hold, in order; only the first one in first-match mode."""
    matched = []
    for rule in rules.rules:
        if rule_matches(rule, headers, size, source_id):
            matched.append(rule)
            if rules.mode == "first-match":
                break
    return matched
