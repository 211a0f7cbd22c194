"""A plain Python SMTP client: the corpus sent straight from disk to the sink with smtplib.

Run as a child process by the benchmark and measured like every client: a reference for what
the sink and a simple Python client reach together on this machine.

Usage: python smtp_push.py SMTP_PORT CORPUS_FOLDER (every mailbox folder in it, in name order)
"""

from __future__ import annotations

import json
import smtplib
import sys
from pathlib import Path


def main() -> None:
    port, folder = sys.argv[1:]
    sent = total = 0
    with smtplib.SMTP("127.0.0.1", int(port)) as client:
        for mailbox in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
            for path in sorted(mailbox.iterdir()):
                data = path.read_bytes().replace(b"\n", b"\r\n")  # Maildir LF to SMTP CRLF
                client.sendmail("bench@partner.example", [f"{mailbox.name}@bench.example"], data)
                sent += 1
                total += len(data)
    print(json.dumps({"messages": sent, "bytes": total}))


if __name__ == "__main__":
    main()
