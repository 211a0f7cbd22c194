"""Where the CPU of a mailferry row goes: py-spy attached to ``mailferry run`` and its roles.

Issue 7 asks for a profile wherever a goal is missed. ``run.py --profile DIR`` attaches
py-spy (sampling, ``--nonblocking`` so the roles are never paused) to the supervisor and
its children for the measured window of each mailferry row, keeps the raw samples in DIR
and prints, per role, the functions that took the most CPU. Sampling costs some CPU of
its own, so a profiled run's throughput is a little lower than an unprofiled one's.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_PROCESS = re.compile(r'^process \d+:"(?P<cmd>.*)"$')
_IDLE = ("select (selectors.py", "wait (threading.py", "_worker (concurrent/futures/thread.py")


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return found


class Sampler:
    """One py-spy recording of a process tree, from ``start`` to ``stop``."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        argv = [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
        argv += ["--rate", str(rate), "--format", "raw", "--output", str(output)]
        self._argv = argv
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sampler:
        log = self.output.with_suffix(".log").open("wb")
        self._proc = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> Path:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        return self.output


@dataclass
class RoleProfile:
    samples: int = 0
    idle: int = 0
    leaf: Counter[str] = field(default_factory=Counter)
    ours: Counter[str] = field(default_factory=Counter)


def role_of(label: str) -> str:
    """'broker', a role name (fetch, stream, deliver), 'run' (the supervisor) or 'other',
    from a process's command line."""
    if "kafka.Kafka" in label:
        return "broker"
    words = label.split()
    if "mailferry" in words:
        if "run" in words:
            return "run"
        tail = words[-1]
        return tail if tail in ("fetch", "stream", "deliver") else "other"
    return "other"


def _innermost_ours(frames: list[str]) -> str | None:
    """The deepest frame in mailferry's own code: what our code was doing when sampled."""
    for frame in reversed(frames):
        if "(mailferry/" in frame or "(producers/" in frame or "(streams/" in frame or "(consumers/" in frame:
            return frame
    return None


def read(raw: Path) -> dict[str, RoleProfile]:
    """Samples of a py-spy raw file grouped by role (the innermost ``process`` frame)."""
    roles: dict[str, RoleProfile] = defaultdict(RoleProfile)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        role = "other"
        body = frames
        for index, frame in enumerate(frames):
            match = _PROCESS.match(frame)
            if match:
                role = role_of(match["cmd"])
                body = frames[index + 1 :]
        n = int(count)
        profile = roles[role]
        profile.samples += n
        if not body:
            continue
        if any(marker in body[-1] for marker in _IDLE):
            profile.idle += n
            continue
        profile.leaf[body[-1]] += n
        ours = _innermost_ours(body)
        if ours is not None:
            profile.ours[ours] += n
    return dict(roles)


def report(raw: Path, top: int = 8) -> str:
    """Per role: busy share of the samples, the hottest leaf functions, and the deepest
    mailferry frame under which the CPU was spent."""
    lines = [f"profile {raw} (py-spy, share of each role's busy samples):"]
    for role, profile in sorted(read(raw).items(), key=lambda item: -item[1].samples):
        busy = profile.samples - profile.idle
        if role == "other" or busy <= 0:
            continue
        lines.append(f"  {role}: {busy} busy samples of {profile.samples}")
        for title, counter in (("leaf", profile.leaf), ("in mailferry code", profile.ours)):
            lines.append(f"    {title}:")
            for frame, n in counter.most_common(top):
                lines.append(f"      {100 * n / busy:5.1f}%  {frame}")
    return "\n".join(lines)
