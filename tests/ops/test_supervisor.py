"""The supervisor restarts a role that dies and stops every role cleanly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from mailferry.cli.main import app
from mailferry.cli.run_cmd import ROLES, available_roles
from mailferry.supervisor import Role, Supervisor

SLEEPER = [
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (print('clean stop', flush=True), sys.exit(0)))\n"
    "time.sleep(60)",
]
CRASHER = [sys.executable, "-c", "print('boom: cannot reach the server', flush=True); raise SystemExit(3)"]


def test_a_dead_role_is_reported_and_restarted(tmp_path: Path) -> None:
    messages: list[str] = []
    steady, flaky = Role("steady", SLEEPER), Role("flaky", CRASHER)
    supervisor = Supervisor([steady, flaky], log_dir=tmp_path, report=messages.append, max_backoff=0.2)
    supervisor.start()
    deadline = time.monotonic() + 20
    while flaky.restarts < 2 and time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.05)
    supervisor.stop(timeout=10)
    assert flaky.restarts >= 2 and flaky.exits[:2] == [3, 3]
    assert steady.restarts == 0
    assert any("flaky exited with code 3" in m and "boom: cannot reach the server" in m for m in messages)
    assert any(m.startswith("restarted flaky") for m in messages)
    assert "stopped steady" in messages
    assert "clean stop" in (tmp_path / "steady.log").read_text()


def test_a_role_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = Role(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)",
        ],
    )
    messages: list[str] = []
    supervisor = Supervisor([stubborn], log_dir=tmp_path, report=messages.append)
    supervisor.start()
    while "ready" not in (tmp_path / "stubborn.log").read_text():
        time.sleep(0.05)
    supervisor.stop(timeout=0.5)
    assert messages[-1].startswith("killed stubborn: it did not stop within")
    assert stubborn.process is not None and stubborn.process.poll() is not None


def test_run_finds_every_role_though_the_cli_loads_commands_on_demand() -> None:
    """``mailferry run`` once started no role at all ("roles not available in this build")
    after the top-level group began loading its commands lazily."""
    group = typer.main.get_command(app)
    parent = typer.Context(group, info_name="mailferry")
    run = group.get_command(parent, "run")
    assert run is not None
    present = available_roles(typer.Context(run, parent=parent, info_name="run"))
    assert {name.split()[0] for name in ROLES} <= present


def _usr1_listener(mark: Path, delay: float) -> list[str]:
    """A role that sets its SIGUSR1 handler only after ``delay`` seconds (as a role does once
    it has imported and connected) and then notes every SIGUSR1 in ``mark``."""
    return [
        sys.executable,
        "-c",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        f"time.sleep({delay})\n"
        f"signal.signal(signal.SIGUSR1, lambda *a: open({str(mark)!r}, 'a').write('usr1\\n'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)",
    ]


def test_poll_requests_reach_the_fetch_roles_and_cannot_end_a_role_that_is_starting(tmp_path: Path) -> None:
    fetch = Role("fetch", _usr1_listener(tmp_path / "fetch.mark", 1.0))
    stream = Role("stream", _usr1_listener(tmp_path / "stream.mark", 0.0))
    supervisor = Supervisor([fetch, stream], log_dir=tmp_path, report=lambda _m: None)
    supervisor.start()
    try:
        time.sleep(0.3)
        supervisor.poll_now()  # before the fetch role set its handler: ignored, not fatal
        while "ready" not in (tmp_path / "fetch.log").read_text():
            assert fetch.process is not None and fetch.process.poll() is None, "SIGUSR1 ended the role"
            time.sleep(0.05)
        supervisor.poll_now()
        deadline = time.monotonic() + 10
        while not (tmp_path / "fetch.mark").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        supervisor.check()
    finally:
        supervisor.stop(timeout=10)
    assert (tmp_path / "fetch.mark").read_text() == "usr1\n"
    assert not (tmp_path / "stream.mark").exists(), "only the fetch role polls"
    assert fetch.restarts == 0
