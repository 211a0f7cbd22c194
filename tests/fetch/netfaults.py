"""Network faults on loopback: proxies that cut or rewrite a stream, a scripted fake POP3 server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable


class _Proxy:
    """Forwards 127.0.0.1:<port> to a target port, one thread per direction; subclasses say
    what a direction does with the bytes (``_forward``)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        try:
            self._forward(src, dst, to_client)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _forward(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


class CuttingProxy(_Proxy):
    """Closes both sides once the server has sent ``cut_after`` bytes to the client
    (``None``: never)."""

    def __init__(self, target_port: int, cut_after: int | None) -> None:
        self.cut_after = cut_after
        self.cuts = 0
        super().__init__(target_port)

    def _forward(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        limit = self.cut_after if to_client else None
        sent = 0
        while data := src.recv(65536):
            if limit is not None and sent + len(data) >= limit:
                dst.sendall(data[: limit - sent])
                self.cuts += 1
                return
            dst.sendall(data)
            sent += len(data)


class RewritingProxy(_Proxy):
    """Passes each line (``\\n``-ended, literals included) of either direction of a plain-text
    session through a rewrite function: a real server's answer with one fault a real server
    will not produce on demand."""

    def __init__(
        self,
        target_port: int,
        *,
        to_server: Callable[[bytes], bytes] = lambda line: line,
        to_client: Callable[[bytes], bytes] = lambda line: line,
    ) -> None:
        self.to_server = to_server
        self.to_client = to_client
        super().__init__(target_port)

    def _forward(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        rewrite = self.to_client if to_client else self.to_server
        pending = b""
        while data := src.recv(65536):
            pending += data
            cut = pending.rfind(b"\n") + 1
            if cut:
                lines = pending[:cut].splitlines(keepends=True)
                pending = pending[cut:]
                dst.sendall(b"".join(rewrite(line) for line in lines))


class FakePop3Server:
    """A minimal POP3 server on loopback answering from a dict of canned replies.

    ``replies`` maps a command (``"UIDL"``, ``"RETR 1"`` ...) to the full reply bytes, or to a
    function giving the reply in pieces (a reply without end, say); ``DELE n`` is recorded in
    ``deleted`` and ``QUIT`` commits nothing (it is a fake). Tests may change ``replies``
    between sessions.
    """

    def __init__(
        self,
        replies: dict[str, bytes | Callable[[], Iterable[bytes]]],
        on_command: Callable[[str], None] | None = None,
    ) -> None:
        self.replies = replies
        self.on_command = on_command
        self.deleted: list[int] = []
        self.commands: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"+OK fake POP3 ready\r\n")
        try:
            for raw in reader:
                command = raw.decode().strip()
                self.commands.append(command)
                verb = command.split(" ")[0].upper()
                if verb in ("USER", "PASS"):
                    conn.sendall(b"+OK\r\n")
                elif verb == "CAPA":
                    conn.sendall(b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n")
                elif verb == "DELE":
                    self.deleted.append(int(command.split()[1]))
                    conn.sendall(b"+OK\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"+OK bye\r\n")
                    break
                else:
                    reply = self.replies.get(command, b"-ERR unknown\r\n")
                    for piece in [reply] if isinstance(reply, bytes) else reply():
                        conn.sendall(piece)
        except OSError:
            pass  # the client hung up mid-reply
        finally:
            conn.close()

    def close(self) -> None:
        self._listener.close()


class GarbageServer:
    """Accepts connections and answers with bytes that are not POP3 (or IMAP) at all."""

    def __init__(self, reply: bytes = b"SSH-2.0-OpenSSH_9.2 not a mail server\r\n") -> None:
        self.reply = reply
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            try:
                conn.sendall(self.reply)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._listener.close()
