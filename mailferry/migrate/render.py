"""The mailferry TOML of a ``Migration``: one tenant, its sources, a target to fill in.

The output is a config ``mailferry config validate`` accepts once the listed environment
variables are set; the target is a placeholder EWS endpoint on a reserved ``.invalid`` name
so that nothing is delivered anywhere before an operator names the real one.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from mailferry.migrate.model import Migration

PLACEHOLDER_ENDPOINT = "https://exchange.example.invalid/EWS/Exchange.asmx"


def render(migration: Migration, *, tenant: str = "migrated") -> str:
    domains = migration.domains or ["example.invalid"]
    postmaster = migration.postmaster or "postmaster"
    if "@" not in postmaster:
        postmaster = f"{postmaster}@{domains[0]}"
    target: dict[str, Any] = {
        "name": "exchange",
        "kind": "ews",
        "endpoint": PLACEHOLDER_ENDPOINT,
        "auth": "ntlm",
        "username": "CHANGE-ME\\svc-mailferry",
        "password": "env:MAILFERRY_EWS_PASSWORD",
    }
    document = {
        "tenants": [
            {
                "id": tenant,
                "accepted_domains": domains,
                "default_mailbox": postmaster.lower(),
                "default_target": "exchange",
                "targets": [target],
                "sources": migration.sources,
            }
        ]
    }
    header = [
        f"# mailferry config migrated from {migration.origin} by `mailferry migrate`.",
        "# Before use: set the environment variables listed below, replace the placeholder",
        f"# target ({PLACEHOLDER_ENDPOINT}), then run `mailferry config validate` on this file.",
        "# Secrets: " + (", ".join(sorted(migration.secrets)) or "none") + ", MAILFERRY_EWS_PASSWORD",
    ]
    if migration.not_carried:
        header.append("# Not carried over (or carried over differently):")
        header += [f"#   {line}" for line in migration.not_carried]
    return "\n".join(header) + "\n\n" + tomli_w.dumps(document)
