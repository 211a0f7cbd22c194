"""What a config that parses still cannot do: checked by ``mailferry config validate``.

The models accept each of these on its own (an empty tenant list is the embedded demo's
default, an extra target is harmless to load), but a file handed to ``config validate`` is
meant to run the pipeline, and each of these stops it later, at a worse moment:

- no tenants: fetch, stream and deliver would start and do nothing;
- a SASL security protocol without a mechanism, or a mechanism without user name and password:
  the first Kafka connection fails with the broker's less helpful words;
- a target no tenant default or rule names: mail never reaches it, most often a typo in
  ``default_target`` or a rule's ``target``.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailferry.config.locate import Path
from mailferry.config.models import MailferryConfig

Problem = tuple[Path, str]

NO_TENANTS = "no tenants: the fetch, stream and deliver roles would have nothing to do"


def _kafka(config: MailferryConfig) -> Iterator[Problem]:
    kafka = config.kafka
    sasl = kafka.security_protocol.startswith("SASL_")
    if sasl and kafka.sasl_mechanism is None:
        yield (
            ("kafka", "security_protocol"),
            f"{kafka.security_protocol} needs kafka.sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
        )
    if (sasl or kafka.sasl_mechanism) and (not kafka.sasl_username or kafka.sasl_password is None):
        yield (
            ("kafka", "sasl_mechanism" if kafka.sasl_mechanism else "security_protocol"),
            "SASL needs kafka.sasl_username and kafka.sasl_password",
        )
    if kafka.sasl_mechanism and not sasl:
        yield (
            ("kafka", "sasl_mechanism"),
            f"sasl_mechanism is ignored with security_protocol {kafka.security_protocol}: use SASL_SSL",
        )


def _unused_targets(config: MailferryConfig) -> Iterator[Problem]:
    for t, tenant in enumerate(config.tenants):
        used = {tenant.default_target} | {r.target for r in tenant.rules.rules if r.target}
        for n, target in enumerate(tenant.targets):
            if target.name not in used:
                yield (
                    ("tenants", t, "targets", n, "name"),
                    f"target {target.name!r} of tenant {tenant.id} is used by no default_target or rule",
                )


def viability_problems(config: MailferryConfig) -> list[Problem]:
    problems: list[Problem] = []
    if not config.tenants:
        problems.append((("tenants",), NO_TENANTS))
    problems += _kafka(config)
    problems += _unused_targets(config)
    return problems
