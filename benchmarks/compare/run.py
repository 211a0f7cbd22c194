"""mailferry side by side with fetchmail, getmail6 and the bare POP3 limit, on the same data.

Run as root (Dovecot, fetchmail and getmail6 need it here), after ``benchmarks/setup``:

    .venv/bin/python benchmarks/compare/run.py                 # default corpus, all clients
    .venv/bin/python benchmarks/compare/run.py --smoke         # tiny corpus, a quick check
    .venv/bin/python benchmarks/compare/run.py --mailboxes 4 --messages 1000 --only a,b

Clients: a = drain limit and poplib loop, b = fetchmail (SMTP), c = getmail6 (Maildir),
d = mailferry end to end (SMTP sink, then the EWS emulator). ``--baseline REV --rounds N`` runs
the mailferry rows N times with git revision REV's code and this tree's, alternating, for a
side-by-side ratio; ``--warm-messages N`` delivers N other messages first on each running
pipeline, unmeasured (a long-running service is warm). Scenarios beyond throughput:
``--latency`` (drip at a steady rate, 1 s polling) and ``--scale`` (1,000 mailboxes, 10 s poll).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import runners

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks/: revisions.py
from corpus import CorpusSpec
from latency import LatencyResult
from results import Result, print_latency, print_report
from revisions import checkout
from sink import SmtpSink
from source import Corpus, materialise


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mailboxes", type=int, default=2, help="personal mailboxes (one global on top)")
    parser.add_argument("--messages", type=int, default=200, help="messages in the whole corpus")
    parser.add_argument("--seed", type=int, default=CorpusSpec.seed)
    parser.add_argument("--huge-mb", type=int, default=0, help="add one message of this many MB")
    parser.add_argument("--small", action="store_true", help="small mail only: every message 4-30 KB")
    parser.add_argument("--only", default="a,b,c,d", help="clients to run: a,b,c,d")
    parser.add_argument("--smoke", action="store_true", help="tiny corpus (2 mailboxes, 12 messages)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/var/tmp/mailferry-bench"),
        help="where the generated corpus is kept between runs",
    )
    parser.add_argument(
        "--targets", default="smtp,maildir,ews", help="mailferry rows (d) to run: smtp,maildir,ews"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the mailferry rows; raw samples go here"
    )
    parser.add_argument(
        "--warm-messages",
        type=int,
        default=0,
        help="mailferry rows: first deliver this many other messages (same shape, next seed), unmeasured",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="mailferry rows: also run git revision REV's code, alternating with this tree's",
    )
    parser.add_argument("--rounds", type=int, default=1, help="mailferry rows: how many times each")
    parser.add_argument(
        "--poll-now",
        action="store_true",
        help="mailferry rows of this tree also run with the fetch role told to poll when the clock starts",
    )
    parser.add_argument("--latency", action="store_true", help="also run the drip (latency) scenario")
    parser.add_argument("--drip-rate", type=float, default=2.0, help="latency: messages a second")
    parser.add_argument("--drip-seconds", type=float, default=30.0, help="latency: how long to drip")
    parser.add_argument("--scale", action="store_true", help="also run the many-mailbox scenario")
    parser.add_argument("--scale-mailboxes", type=int, default=1000)
    parser.add_argument("--scale-interval", type=float, default=10.0, help="scale: poll interval, seconds")
    parser.add_argument("--scale-concurrency", type=int, default=None, help="scale: tenant fetch_concurrency")
    parser.add_argument("--scale-seconds", type=float, default=60.0, help="scale: measured window")
    args = parser.parse_args(argv)
    if args.smoke:
        args.mailboxes, args.messages = 2, 12
    return args


def run_latency(args: argparse.Namespace, corpus: Corpus, work: Path, only: set[str]) -> None:
    import latency_peers

    sink = SmtpSink().start()
    measured: list[LatencyResult] = []
    try:
        if "b" in only:
            measured.append(latency_peers.fetchmail(corpus, work, sink, args.drip_rate, args.drip_seconds))
        if "c" in only:
            measured.append(latency_peers.getmail(corpus, work, args.drip_rate, args.drip_seconds))
        if "d" in only:
            import mailferry_runner

            measured.append(mailferry_runner.latency(corpus, work, sink, args.drip_rate, args.drip_seconds))
    finally:
        sink.stop()
    print_latency(
        measured,
        f"latency, {args.drip_rate:g} msg/s for {args.drip_seconds:g} s over "
        f"{len(corpus.mailboxes)} mailboxes, 1 s polling: source arrival to delivery",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(
            "run as root: the benchmark starts Dovecot and runs fetchmail/getmail6 as root", file=sys.stderr
        )
        return 2
    spec = CorpusSpec(
        mailboxes=args.mailboxes,
        messages=args.messages,
        seed=args.seed,
        huge_mb=args.huge_mb,
        small=args.small,
    )
    args.cache.mkdir(parents=True, exist_ok=True)
    corpus = materialise(spec, args.cache)
    only = set(args.only.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="mailferry-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"corpus: {corpus.messages} messages, {corpus.total_bytes / 1e6:.1f} MB in {len(corpus.mailboxes)} "
        f"mailboxes ({spec.mailboxes} personal + 1 global), seed {spec.seed}; work folder {work}"
    )
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {_load()}")
    sink = SmtpSink().start()
    results: list[Result] = []
    try:
        if "a" in only:
            results.append(runners.drain(corpus, work))
            results.append(runners.poplib_loop(corpus, work))
            results.append(runners.sink_limit(corpus, work, sink))
        if "b" in only:
            results.append(runners.fetchmail(corpus, work, sink))
        if "c" in only:
            results.append(runners.getmail(corpus, work))
        if "d" in only:
            import mailferry_runner

            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
            warm_with = None
            if args.warm_messages:
                warm_spec = replace(spec, seed=spec.seed + 1, messages=args.warm_messages, huge_mb=0)
                warm_with = materialise(warm_spec, args.cache)
            sides: list[tuple[Path | None, str, bool]] = [(None, "this tree" if args.baseline else "", False)]
            if args.poll_now:
                sides.append((None, "this tree, poll now" if args.baseline else "poll now", True))
            if args.baseline:
                sides.insert(0, (checkout(args.baseline, work / "baseline"), args.baseline, False))
            targets = tuple(args.targets.split(","))
            for _ in range(args.rounds):
                for code, tag, poll_now in sides:
                    results += mailferry_runner.throughput(
                        corpus, work, sink, args.profile, targets, warm_with, code, tag, poll_now
                    )
    finally:
        sink.stop()
    print_report(
        results,
        f"throughput, {corpus.messages} messages / {corpus.total_bytes / 1e6:.1f} MB, "
        f"one run each, fresh Dovecot per run",
    )
    print(f"after the throughput runs: {_load()}")
    if args.latency:
        run_latency(args, corpus, work, only)
    if args.scale:
        import scale

        scale.run(
            work,
            mailboxes=args.scale_mailboxes,
            interval=args.scale_interval,
            seconds=args.scale_seconds,
            concurrency=args.scale_concurrency,
        )
    print(f"at the end: {_load()}")
    return 0 if all(r.complete or not r.runnable for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
