"""``mailferry demo``: the main job on this machine against a local Dovecot and the EWS EMULATOR.

The demo's servers and sample mail live in the test kit (``mailferry_testkit``, installed with
``mailferry[demo]``), not in the runtime wheel; without it the command says how to get it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import Progress
from rich.table import Table

from mailferry.audit_trace import trace
from mailferry.cli.audit_cmd import trace_table
from mailferry.cli.context import CliContext
from mailferry.cli.output import cli_errors, console
from mailferry.cli.run_cmd import prepare
from mailferry.config.models import default_state_dir
from mailferry.errors import SetupError

if TYPE_CHECKING:
    from mailferry_testkit.demo import DemoEnvironment

NO_TESTKIT = (
    "mailferry demo needs the test kit, which the runtime install leaves out: "
    "pip install 'mailferry[demo]' (from a clone: scripts/demo)"
)

SUMMARY_COLUMNS = (
    "fetched",
    "duplicate",
    "routed",
    "delivered",
    "retried",
    "dead-lettered",
    "source-deleted",
)


@cli_errors
def demo_cmd(
    root: Path | None = typer.Option(None, help="demo folder (default: <state dir>/demo), emptied first"),
    timeout: float = typer.Option(300.0, help="seconds to wait for every expected delivery"),
    keep_running: bool = typer.Option(False, help="leave Dovecot, the emulator and Kafka running"),
) -> None:
    """Seed a local Dovecot, run every role until each message arrived, print a summary and a trace.

    Tenant acme: a personal POP3S mailbox delivered into the EWS EMULATOR (not Exchange).
    Tenant globex: a global IMAP (STARTTLS) catch-all delivered into a Maildir. The sample mail
    holds duplicates, a Bcc-only message, one without Message-ID and a large attachment.
    """
    root = root or default_state_dir() / "demo"
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log or CI page: do not fold the tables
    try:
        from mailferry_testkit.demo import DemoEnvironment, reset
    except ModuleNotFoundError as missing:
        if missing.name != "mailferry_testkit":
            raise
        raise SetupError(NO_TESTKIT) from None
    reset(root)
    env = DemoEnvironment(root)
    cli: CliContext | None = None
    run: subprocess.Popen[bytes] | None = None
    try:
        env.start()
        console.print(
            f"Dovecot on 127.0.0.1 (POP3S {env.dovecot.pop3s_port}, IMAP {env.dovecot.imap_port}); "
            f"EWS EMULATOR at {env.ews.url}; config {env.config_path}",
            highlight=False,
        )
        cli = CliContext(env.config_path)
        prepare(cli)
        log = root / "run.log"
        with log.open("wb") as out:
            run = subprocess.Popen(
                [sys.executable, "-m", "mailferry", "-c", str(env.config_path), "run"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        complete = _wait_for_delivery(env, timeout)
        time.sleep(2.0)  # the last audit events follow the deliveries by a moment
        _stop(run)
        run = None
        servers = cli.bootstrap_servers()
        from mailferry_testkit.demo import mailbox_summary

        _print_summary(mailbox_summary(cli.config, servers))
        meeting = next(m for m in env.catchall if m.name == "catchall-meeting-bob")
        message_id = BytesHeaderParser().parsebytes(meeting.data)["Message-ID"]
        console.print(trace_table(message_id, trace(cli.config.kafka, servers, message_id)))
        console.print(
            f"Maildir of tenant globex: {env.maildir_root}\n"
            f"logs of the roles: {cli.config.state_dir / 'logs'} and {log}",
            highlight=False,
        )
        if not complete:
            console.print(f"[red]not every message arrived within {timeout:.0f} s; see {log}[/red]")
            raise typer.Exit(1)
    finally:
        if run is not None:
            _stop(run)
        if not keep_running:
            if cli is not None:
                cli.embedded_broker().stop()
            env.stop()


def _wait_for_delivery(env: DemoEnvironment, timeout: float) -> bool:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("delivering", total=sum(env.expected().values()))

        def show(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return env.wait(timeout, show)


def _stop(run: subprocess.Popen[bytes]) -> None:
    run.send_signal(signal.SIGINT)
    try:
        run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()


def _print_summary(counts: Mapping[str, Mapping[str, int]]) -> None:
    table = Table(title="per source mailbox (from the audit topic)")
    table.add_column("tenant/mailbox")
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="right")
    for mailbox in sorted(counts):
        table.add_row(mailbox, *(str(counts[mailbox].get(c, 0)) for c in SUMMARY_COLUMNS))
    console.print(table)
