"""One row of the comparison and the table that puts the rows side by side."""

from __future__ import annotations

from dataclasses import dataclass

from latency import LatencyResult
from rich.console import Console
from rich.table import Table

LIMIT_ROW = "a. drain limit"


@dataclass
class Result:
    name: str
    expected: int  # deliveries the run must make (messages, or message x recipient)
    delivered: int
    corpus_bytes: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    note: str = ""
    runnable: bool = True

    @property
    def complete(self) -> bool:
        return self.runnable and self.delivered >= self.expected

    @property
    def msg_per_s(self) -> float:
        return self.delivered / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        share = self.delivered / self.expected if self.expected else 0.0
        return self.corpus_bytes * share / 1e6 / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s / self.delivered * 1000 if self.delivered else 0.0


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else "-"


def render(results: list[Result], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "client",
        "delivered",
        "wall s",
        "msg/s",
        "MB/s",
        "CPU s/1k msg",
        "peak RSS MB",
        "x limit",
        "note",
    ):
        table.add_column(column, overflow="fold")
    limit = next((r for r in results if r.name == LIMIT_ROW and r.complete), None)
    base = limit.mb_per_s if limit else 0.0
    for r in results:
        if not r.runnable:
            table.add_row(r.name, "-", "-", "-", "-", "-", "-", "-", r.note)
            continue
        table.add_row(
            r.name,
            f"{r.delivered}/{r.expected}",
            f"{r.wall_s:.1f}",
            f"{r.msg_per_s:.1f}",
            f"{r.mb_per_s:.1f}",
            f"{r.cpu_per_1000:.1f}",
            f"{r.peak_rss_mb:.0f}",
            _ratio(r.mb_per_s, base),
            r.note,
        )
    return table


def peer_ratios(results: list[Result]) -> list[str]:
    """Lines 'mailferry X is Nx fetchmail/getmail6' for every complete mailferry row."""
    lines = []
    peers = [r for r in results if r.complete and r.name.startswith(("b.", "c."))]
    for ours in (r for r in results if r.complete and r.name.startswith("d.")):
        for peer in peers:
            lines.append(f"{ours.name} / {peer.name}: {_ratio(ours.mb_per_s, peer.mb_per_s)}x")
    return lines


def print_latency(results: list[LatencyResult], title: str) -> None:
    table = Table(title=title)
    for column in ("client", "arrived", "p50 s", "p99 s", "max s", "note"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            r.name, f"{r.arrived}/{r.sent}", f"{r.p50_s:.2f}", f"{r.p99_s:.2f}", f"{r.max_s:.2f}", r.note
        )
    Console(width=200).print(table)


def print_report(results: list[Result], title: str) -> None:
    console = Console(width=200)
    console.print(render(results, title))
    for line in peer_ratios(results):
        console.print(line, highlight=False)
