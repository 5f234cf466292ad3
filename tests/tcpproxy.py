"""A small TCP proxy between a worker and PostgreSQL, so a test can cut the network.

``cut()`` is a network that fails loudly: every connection through the proxy is reset and
new ones are refused until ``restore()``.

A silent (half-open) network is not offered: the proxy's own kernel would still answer the
client's TCP keepalive probes, so it could not show whether keepalives notice a dead path.

One thread serves every connection with a selector; it stops when the proxy is closed, and
the context manager closes it at the end of the test whatever happened.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Mode = Literal["open", "cut"]


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a broken network path looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.mode: Mode = "open"
        self.peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcpproxy", daemon=True)
        self._thread.start()

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    # -- what a test does ---------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every connection and refuse new ones until ``restore``."""
        with self._lock:
            self.mode = "cut"
            self._drop_all()

    def restore(self) -> None:
        with self._lock:
            self.mode = "open"

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        with self._lock:
            self._drop_all()
        self.listener.close()

    # -- the thread ---------------------------------------------------------------------------

    def _drop_all(self) -> None:
        for sock in list(self.peers):
            _reset(sock)
        self.peers.clear()

    def _serve(self) -> None:
        while not self._closed.is_set():
            selector = selectors.DefaultSelector()
            # Registered under the lock: a cut() in between would close a socket first, and
            # registering a closed one raises, which ended this thread (and the proxy) for
            # good. One closed while select() waits just drops out of the epoll set.
            with self._lock:
                selector.register(self.listener, selectors.EVENT_READ)
                for sock in self.peers if self.mode == "open" else ():
                    selector.register(sock, selectors.EVENT_READ)
            try:
                events = selector.select(timeout=0.05)
            except (OSError, ValueError):
                events = []
            finally:
                selector.close()
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self.listener:
                        self._accept()
                    elif sock in self.peers and self.mode == "open":
                        self._pump(sock)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        if self.mode == "cut":
            _reset(client)
            return
        try:
            upstream = self._upstream()
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(5)
        self.peers[client] = upstream
        self.peers[upstream] = client

    def _upstream(self) -> socket.socket:
        """TCP, or the server's Unix socket when its host is a directory (the embedded
        server listens only there)."""
        host, port = self.target
        if not host.startswith("/"):
            return socket.create_connection(self.target, timeout=5)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.settimeout(5)
        upstream.connect(f"{host}/.s.PGSQL.{port}")
        return upstream

    def _pump(self, sock: socket.socket) -> None:
        peer = self.peers[sock]
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, peer):
            self.peers.pop(end, None)
            _reset(end)


@contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.close()
