"""What the SMTP sink itself can take: the corpus sent straight from disk with smtplib.

Run as a child process by the benchmark, so the sink's ceiling is measured like every client;
a client that delivers over SMTP cannot be faster than this row.

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
