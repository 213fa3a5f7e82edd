"""A TCP proxy on loopback whose link can be made to fail without killing anything.

Faults that are not crashes: the process at either end stays alive while its connection
is ``blackhole`` (accepted, never answered: what a dropped route or a full firewall
table looks like), ``reset`` (accepted and closed at once) or ``slow`` (every chunk
delayed). Between two processes of this machine, a proxy in user space is the one way
that needs no privileges (network namespaces and tc need root and a kernel module).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

MODES = ("pass", "blackhole", "reset", "slow")


@dataclass
class TcpProxy:
    """Listens on ``127.0.0.1:port`` (0: a free one) and forwards to ``target``."""

    target: tuple[str, int]
    port: int = 0
    mode: str = "pass"
    delay_s: float = 0.2
    """What ``slow`` adds to every chunk, each way."""
    _server: socket.socket = field(init=False, repr=False)
    _links: list[socket.socket] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    def set_mode(self, mode: str) -> None:
        """Connections open now go on in the new mode, as in a real partition: a
        blackhole freezes them (nothing forwarded, nothing closed), slow slows them.
        ``reset`` closes them, and so does the end of a blackhole: by then each end has
        given up on them, or should have (``outbox.watchdog``)."""
        if mode not in MODES:
            raise ValueError(f"proxy mode must be one of {', '.join(MODES)}, not {mode!r}")
        with self._lock:
            closing = mode == "reset" or self.mode == "blackhole"
            self.mode = mode
            links = self._links if closing else []
            if closing:
                self._links = []
        end(links)

    def close(self) -> None:
        self._stopped.set()
        self._server.close()
        with self._lock:
            links, self._links = self._links, []
        end(links)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:  # the mode read and the link kept at once: a switch in
                mode = self.mode  # between left a blackholed link open for ever
                if mode != "reset":
                    self._links.append(client)
            if mode == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                client.close()
                continue
            if mode == "blackhole":
                continue  # held open, never read from or answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._links.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                while self.mode == "blackhole" and not self._stopped.is_set():
                    time.sleep(0.05)  # frozen: held until the link is closed
                if self.mode == "slow":
                    time.sleep(self.delay_s)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def end(links: list[socket.socket]) -> None:
    """Shut down, then close: a close alone leaves a connection open while another thread
    is blocked reading it (the pump), and PostgreSQL kept a session, and the partition
    leases it held, behind a link long given up."""
    for link in links:
        with contextlib.suppress(OSError):
            link.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            link.close()
