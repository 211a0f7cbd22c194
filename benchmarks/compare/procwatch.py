"""Run a client as a child process and measure what it costs: wall time, CPU seconds, peak RSS.

CPU comes from ``os.wait4`` on the child, which the kernel fills with the child's own time plus
that of every descendant it waited for, so a client that forks (mailferry's roles, the embedded
Kafka broker) is charged in full. Peak RSS per process comes from sampling ``/proc/<pid>/status``
(VmHWM, the kernel's own high-water mark) for the whole process tree, because ``ru_maxrss`` of a
tree reports only its largest member and says nothing about which one that was. Read straight
from /proc rather than through psutil, which the project does not otherwise need.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcSample:
    pid: int
    label: str
    cpu_s: float = 0.0
    peak_rss_kb: int = 0


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    exit_code: int
    processes: list[ProcSample] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float:
        return max((p.peak_rss_kb for p in self.processes), default=0) / 1024

    def peak_of(self, match: Callable[[ProcSample], bool]) -> float:
        return max((p.peak_rss_kb for p in self.processes if match(p)), default=0) / 1024

    def cpu_of(self, match: Callable[[ProcSample], bool]) -> float:
        return sum(p.cpu_s for p in self.processes if match(p))


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def read_process(pid: int) -> tuple[str, float, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    hwm = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return cmdline.strip(), cpu, hwm


def reaped_children_cpu(pid: int) -> float:
    """CPU seconds of the children ``pid`` has already waited for (cutime + cstime): a server's
    short-lived workers (Dovecot's login and pop3 processes) leave their cost there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / _CLK_TCK


class Watched:
    """A child process with a sampler thread over its process tree."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        interval: float = 0.2,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log = log
        self.interval = interval
        self.samples: dict[int, ProcSample] = {}
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._began = 0.0

    def start(self) -> Watched:
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self._began = time.perf_counter()
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._thread.start()
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _sample_once(self) -> None:
        for pid in process_tree(self.pid):
            read = read_process(pid)
            if read is None:
                continue
            label, cpu, hwm = read
            sample = self.samples.setdefault(pid, ProcSample(pid, label))
            sample.cpu_s = max(sample.cpu_s, cpu)
            sample.peak_rss_kb = max(sample.peak_rss_kb, hwm)
            if label:
                sample.label = label

    def cpu_now(self) -> dict[int, tuple[str, float]]:
        """CPU seconds so far of every process in the tree, for measuring a window of a long run."""
        self._sample_once()
        return {pid: (s.label, s.cpu_s) for pid, s in self.samples.items()}

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            self._sample_once()
            self._stop.wait(self.interval)

    def running(self) -> bool:
        """Whether the child still runs, without reaping it (wait4 must get its usage)."""
        if self._proc is None or self._proc.returncode is not None:
            return False
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def send(self, sig: int = signal.SIGTERM) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def signal_group(self, sig: int = signal.SIGTERM) -> None:
        """Signal the child's whole process group (a shell loop and what it runs)."""
        if self.running():
            os.killpg(self.pid, sig)

    def wait(self, timeout: float | None = None, *, wall_end: float | None = None) -> Measurement:
        """Reap the child (killing its group after ``timeout``); wall time ends at ``wall_end``
        (a perf_counter moment the caller chose, e.g. the last delivery) or at the exit."""
        assert self._proc is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                os.killpg(self.pid, signal.SIGKILL)
                deadline = None
            time.sleep(0.02)
        ended = time.perf_counter()
        self._stop.set()
        self._thread.join()
        self._proc.returncode = os.waitstatus_to_exitcode(status)
        return Measurement(
            wall_s=(wall_end if wall_end is not None else ended) - self._began,
            cpu_s=usage.ru_utime + usage.ru_stime,
            exit_code=self._proc.returncode,
            processes=sorted(self.samples.values(), key=lambda p: p.pid),
        )

    @property
    def began(self) -> float:
        return self._began


def run_to_end(
    argv: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None, timeout: float = 3600
) -> Measurement:
    return Watched(argv, env=env, log=log).start().wait(timeout)
