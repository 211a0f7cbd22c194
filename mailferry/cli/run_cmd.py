"""``mailferry run``: every role on one machine, supervised."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import Any

import typer

from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import topic_specs
from mailferry.supervisor import Role, Supervisor

ROLES = ("fetch", "stream", "deliver", "audit index")


def available_roles(ctx: typer.Context) -> set[str]:
    """The commands this build can run: the top-level group loads most of them on demand
    (``mailferry.cli.lazy``), so they are not in its ``commands`` until asked for."""
    parent = ctx.parent
    group: Any = parent.command if parent is not None else None
    if parent is None or not hasattr(group, "list_commands"):
        return set()
    present: set[str] = set()
    for name in group.list_commands(parent):
        try:
            if group.get_command(parent, name) is not None:
                present.add(name)
        except ImportError:  # a build without that stage's package
            continue
    return present


def prepare(cli: CliContext) -> bool:
    """Start the embedded broker if Kafka is not configured and ensure the topics.
    True when this call started the broker (so the caller stops it again)."""
    config = cli.config
    started = False
    if config.kafka.uses_embedded:
        broker = cli.embedded_broker()
        started = broker.running_state() is None
        state = broker.start()
        console.print(f"embedded Kafka {state.version} at {state.address} (state in {config.state_dir})")
    admin = new_admin(config.kafka, cli.bootstrap_servers())
    try:
        report = ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
    finally:
        admin.close()
    for line in report.lines():
        console.print(line, highlight=False)
    return started


def role_argv(cli: CliContext, name: str) -> list[str]:
    argv = [sys.executable, "-m", "mailferry"]
    if cli.config_path is not None:
        argv += ["-c", str(cli.config_path)]
    return [*argv, *name.split()]


@cli_errors
def run(
    ctx: typer.Context,
    roles: list[str] = typer.Option(list(ROLES), "--role", help="roles to run (default: all)"),
    keep_broker: bool = typer.Option(False, help="leave the embedded broker running on exit"),
) -> None:
    """Start Kafka if needed, ensure the topics, sync the mailboxes, run and supervise the roles.

    Ctrl-C stops every role cleanly (each finishes and commits what it holds), then the
    embedded broker if this command started it. SIGUSR1 is passed on to the fetch role: every
    mailbox waiting for its poll timer starts a pass now.
    """
    cli: CliContext = ctx.obj
    cli.check_secrets()
    started_broker = prepare(cli)
    present = available_roles(ctx)
    if "mailboxes" in present:
        import subprocess

        subprocess.run(role_argv(cli, "mailboxes sync"), check=False)
    chosen = [Role(name, role_argv(cli, name)) for name in roles if name.split()[0] in present]
    missing = [name for name in roles if name.split()[0] not in present]
    if missing:
        console.print(f"roles not available in this build: {', '.join(missing)}", highlight=False)
    supervisor = Supervisor(
        chosen, log_dir=cli.config.state_dir / "logs", report=lambda m: console.print(m, highlight=False)
    )
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda _s, _f: supervisor.poll_now())
    try:
        supervisor.start()
        if chosen:
            console.print(f"running {', '.join(r.name for r in chosen)}; Ctrl-C stops", highlight=False)
            while not stop_requested:
                supervisor.check()
                time.sleep(0.5)
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started_broker and not keep_broker:
            cli.embedded_broker().stop()
            console.print("stopped the embedded broker")
