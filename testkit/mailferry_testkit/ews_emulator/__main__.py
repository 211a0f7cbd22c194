"""Run the EWS EMULATOR (not Microsoft Exchange) as its own process, for demos and benchmarks.

``python -m mailferry_testkit.ews_emulator --mailboxes 50 --max-concurrent 27`` prints the
endpoint URL on the first line of stdout, then serves until stdin closes or SIGTERM.
A separate process keeps the emulator's CPU out of the client's interpreter (one GIL each).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from mailferry_testkit.ews_emulator.server import EwsEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="EWS EMULATOR - not Microsoft Exchange")
    parser.add_argument("--mailboxes", type=int, default=10, help="user1@DOMAIN .. userN@DOMAIN")
    parser.add_argument("--domain", default="contoso.example")
    parser.add_argument("--account", default="svc-mailferry:emulator", help="USER:PASSWORD (impersonation)")
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--service-time", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--keep-items", action="store_true", help="keep item bodies (default: count only)")
    args = parser.parse_args(argv)

    emulator = EwsEmulator(max_concurrent=args.max_concurrent, service_time=args.service_time)
    user, _, password = args.account.partition(":")
    emulator.add_account(user, password)
    emulator.add_mailbox(f"postmaster@{args.domain}")
    for n in range(1, args.mailboxes + 1):
        emulator.add_mailbox(f"user{n}@{args.domain}")
    emulator.store.keep_bodies = args.keep_items
    emulator.start()
    print(emulator.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def wait_for_stdin_eof() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_for_stdin_eof, daemon=True).start()
    done.wait()
    print(f"requests {emulator.requests} rejected-busy {emulator.rejected_busy}", file=sys.stderr, flush=True)
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
