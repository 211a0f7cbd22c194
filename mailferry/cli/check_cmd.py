"""``mailferry check [TENANT/SOURCE|TENANT/TARGET]``."""

from __future__ import annotations

import typer

from mailferry.check.report import CheckReport
from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console, print_json
from mailferry.config import MailferryConfig
from mailferry.errors import NotFoundError


def _run(config: MailferryConfig, wanted: str | None) -> list[CheckReport]:
    from mailferry.check.probe import check_source, check_target  # sockets and clients: load on use

    reports: list[CheckReport] = []
    for tenant in config.tenants:
        for source in tenant.sources:
            if wanted in (None, tenant.id, f"{tenant.id}/{source.id}"):
                reports.append(check_source(tenant, source))
        for target in tenant.targets:
            if wanted in (None, tenant.id, f"{tenant.id}/{target.name}"):
                reports.append(check_target(tenant, target.name))
    if not reports:
        raise NotFoundError(
            f"no tenant, source or target named {wanted}" if wanted else "no tenants configured"
        )
    return reports


def _show(report: CheckReport) -> None:
    console.print(f"{report.name} ({report.kind})", highlight=False)
    if report.tls is not None:
        tls = report.tls
        console.print(
            f"  TLS: {tls.version}, certificate {tls.subject} (issuer {tls.issuer}), "
            f"expires {tls.expires} ({tls.days_left} days)",
            highlight=False,
        )
    for step in report.steps:
        console.print(f"  {step}", highlight=False)
    if report.capabilities:
        offered = " ".join(f"{name}={'yes' if on else 'no'}" for name, on in report.capabilities.items())
        console.print(f"  capabilities: {offered}", highlight=False)
    if report.messages is not None:
        console.print(f"  {report.messages} messages, {report.size} bytes (nothing fetched)", highlight=False)
    console.print(f"  verdict: {report.verdict}", highlight=False)


@cli_errors
def check_cmd(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="TENANT, TENANT/SOURCE or TENANT/TARGET; default: all"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object: {ok, checks: [...]}"),
) -> None:
    """Connect to sources and targets now: TLS, certificate, login, capabilities, message count and
    size, mailbox access; nothing is fetched or delivered. Exit 1 when a check fails."""
    cli: CliContext = ctx.obj
    reports = _run(cli.config, name)
    ok = all(r.ok for r in reports)
    if as_json:
        print_json({"ok": ok, "checks": [r.as_json() for r in reports]})
    else:
        for report in reports:
            _show(report)
    if not ok:
        raise typer.Exit(1)
