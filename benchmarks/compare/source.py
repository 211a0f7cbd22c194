"""The benchmark's source: the corpus on disk once, and a fresh Dovecot seeded with it per run.

Every client starts from the same state because every client gets its own new server, seeded
from the same files and warmed the same way (Dovecot's index and the POP3 virtual sizes are
built before the clock starts, so no client pays the server's first-scan cost for another).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from corpus import GLOBAL_MAILBOX, CorpusSpec, generate

from mailferry_testkit.dovecot import DOVEADM, DovecotServer

SEED_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Corpus:
    folder: Path
    spec: CorpusSpec
    counts: dict[str, int]  # messages per mailbox
    total_bytes: int
    recipients: dict[str, str]  # bench id -> local user it belongs to

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    @property
    def mailboxes(self) -> list[str]:
        return list(self.counts)

    @staticmethod
    def password(user: str) -> str:
        return f"pw-{user}"


def materialise(spec: CorpusSpec, cache: Path) -> Corpus:
    """Write the corpus as one file per message under ``cache`` (reused when the spec matches)."""
    small = "-small" if spec.small else ""
    folder = cache / f"corpus-m{spec.mailboxes}-n{spec.messages}-s{spec.seed}-h{spec.huge_mb}{small}"
    manifest = folder / "manifest.json"
    if not manifest.exists():
        shutil.rmtree(folder, ignore_errors=True)
        counts: dict[str, int] = {name: 0 for name in spec.mailbox_names()}
        recipients: dict[str, str] = {}
        total = 0
        for message in generate(spec):
            box = folder / message.mailbox
            box.mkdir(parents=True, exist_ok=True)
            (box / message.bench_id).write_bytes(message.data)
            counts[message.mailbox] += 1
            recipients[message.bench_id] = message.recipient
            total += len(message.data)
        manifest.write_text(
            json.dumps(
                {"spec": asdict(spec), "counts": counts, "total_bytes": total, "recipients": recipients}
            )
        )
    data = json.loads(manifest.read_text())
    return Corpus(folder, spec, data["counts"], data["total_bytes"], data["recipients"])


def seeded_server(corpus: Corpus, root: Path) -> DovecotServer:
    """A new Dovecot under ``root`` (wiped first) holding the corpus, indexed and sized."""
    shutil.rmtree(root, ignore_errors=True)
    server = DovecotServer(root)
    server.start()
    for user in corpus.mailboxes:
        server.add_user(user, Corpus.password(user))
    for user in corpus.mailboxes:
        batch: list[bytes] = []
        size = 0
        for path in sorted((corpus.folder / user).iterdir()) if (corpus.folder / user).exists() else []:
            data = path.read_bytes()
            batch.append(data)
            size += len(data)
            if size >= SEED_BATCH_BYTES:
                server.seed(user, batch)
                batch, size = [], 0
        server.seed(user, batch)
    warm(server, corpus.mailboxes)
    return server


def warm(server: DovecotServer, users: list[str]) -> None:
    """Let Dovecot scan the Maildirs and compute the POP3 (CRLF) sizes now, outside any timing."""
    for user in users:
        subprocess.run(
            [
                DOVEADM,
                "-c",
                str(server.conf_file),
                "mailbox",
                "status",
                "-u",
                user,
                "messages vsize",
                "INBOX",
            ],
            check=True,
            capture_output=True,
        )


def personal(corpus: Corpus) -> list[str]:
    return [name for name in corpus.mailboxes if name != GLOBAL_MAILBOX]
