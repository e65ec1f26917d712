"""A real HTTP proxy in front of a storage endpoint that can fail chosen requests.

``StorageProxy(upstream).fail_when(predicate)`` answers 500 to every request the
predicate picks (method, path) until ``heal()``; the rest pass through unchanged.
``seen`` lists every request that reached it, as (method, path), in arrival order.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Predicate = Callable[[str, str], bool]
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class StorageProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.failing: Predicate | None = None
        self.failed: list[tuple[str, str]] = []
        self.seen: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path))  # list.append: thread-safe
                rule = proxy.failing
                if rule is not None and rule(self.command, self.path):
                    proxy.failed.append((self.command, self.path))
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, 30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = _forward
            do_HEAD = do_OPTIONS = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_when(self, predicate: Predicate) -> None:
        self.failing = predicate

    def heal(self) -> None:
        self.failing = None

    def start(self) -> StorageProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def storage_proxy(upstream: str) -> Iterator[StorageProxy]:
    proxy = StorageProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
