"""The two reference POP3 clients, run as a child process so they are measured like the others.

``drain`` is the server's limit: one socket per mailbox, every RETR sent at once (Dovecot
announces PIPELINING), the replies read in 1 MB blocks and thrown away without parsing.
``poplib`` is what a plain Python fetcher does: the standard library's line-by-line loop.

Usage: python pop_clients.py drain|poplib PORT USER:PASSWORD [USER:PASSWORD ...]
Prints one JSON line: {"messages": n, "bytes": b}.
"""

from __future__ import annotations

import json
import poplib
import socket
import sys
import threading

HOST = "127.0.0.1"


def drain(port: int, user: str, password: str) -> tuple[int, int]:
    with socket.create_connection((HOST, port)) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # greeting
        sock.sendall(f"USER {user}\r\nPASS {password}\r\nSTAT\r\n".encode())
        for _ in range(2):
            line = reader.readline()
            if not line.startswith(b"+OK"):
                raise SystemExit(f"login failed for {user}: {line!r}")
        stat = reader.readline().split()
        count = int(stat[1])
        commands = b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1)) + b"QUIT\r\n"
        # A sender thread, so a long command list cannot deadlock against unread replies.
        sender = threading.Thread(target=sock.sendall, args=(commands,))
        sender.start()
        received = 0
        while True:
            block = reader.read1(1 << 20)
            if not block:
                break
            received += len(block)
        sender.join()
        return count, received


def poplib_loop(port: int, user: str, password: str) -> tuple[int, int]:
    client = poplib.POP3(HOST, port)
    client.user(user)
    client.pass_(password)
    count, _ = client.stat()
    received = 0
    for i in range(1, count + 1):
        _, _, octets = client.retr(i)
        received += octets
    client.quit()
    return count, received


def main() -> None:
    mode, port, *accounts = sys.argv[1:]
    fetch = drain if mode == "drain" else poplib_loop
    messages = total = 0
    for account in accounts:
        user, password = account.split(":", 1)
        count, received = fetch(int(port), user, password)
        messages += count
        total += received
    print(json.dumps({"messages": messages, "bytes": total}))


if __name__ == "__main__":
    main()
