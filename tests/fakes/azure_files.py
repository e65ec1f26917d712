"""A small in-process Azure Files (File REST API) for tests, driven by the real SDK client.

It serves exactly the calls ``AzureFilesStore`` makes, no smarter than Azure: names are
case-insensitive and case-preserving, ETags change on every change, parents must exist,
a non-empty directory cannot be deleted. Requests must be signed (Shared Key or SAS),
but signatures are not verified. The REST operations live in ``file_rest.py``.

Use ``fake_file_service()`` (context manager) or the ``azure_files_share`` fixture, which
yields a fresh share on a server shared by the whole test session::

    from tests.fakes.azure_files import azure_files_share  # noqa: F401  (the fixture)

    def test_x(azure_files_share):
        store = AzureFilesStore.from_connection_string(
            azure_files_share.connection_string, azure_files_share.share)
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer

import pytest

from gitops_sync.settings import AZURITE_ACCOUNT, AZURITE_KEY
from tests.fakes.file_rest import PAGE_SIZE, FakeError, FileRestHandler, Node

__all__ = [
    "FakeError",
    "FakeFileService",
    "FakeShare",
    "Node",
    "azure_files_share",
    "fake_file_service",
    "fake_file_service_session",
]


@dataclass
class Fault:
    status: int
    code: str
    times: int
    method: str | None
    path_contains: str | None


class FakeFileService:
    """The state (shares of nodes) and the HTTP server that exposes it."""

    def __init__(self, account: str = AZURITE_ACCOUNT, key: str = AZURITE_KEY) -> None:
        self.account = account
        self.key = key
        self.shares: dict[str, Node] = {}
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        #: every request served: (method, operation, path); for tests that count calls
        self.requests: list[tuple[str, str, str]] = []
        self.page_size = PAGE_SIZE
        self._etags = itertools.count(0x8D000000000000)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeFileService:
        handler = type("Handler", (FileRestHandler,), {"service": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-azure-files", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeFileService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake is not running"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"FileEndpoint={self.endpoint};"
        )

    # ---------------------------------------------------------- test hooks
    def fail(
        self,
        status: int,
        code: str,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next TIMES matching requests with STATUS / CODE instead of serving them."""
        with self.lock:
            self.faults.append(Fault(status, code, times, method, path_contains))

    def new_etag(self) -> str:
        return f'"0x{next(self._etags):X}"'

    def lookup(self, share: str, path: str) -> Node | None:
        """The node at PATH (case-insensitive), or None."""
        with self.lock:
            node: Node | None = self.shares.get(share)
            for part in [p for p in path.split("/") if p]:
                if node is None or not node.is_dir:
                    return None
                node = node.children.get(part.casefold())
            return node

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method not in (None, method):
                    continue
                if fault.path_contains is not None and fault.path_contains not in path:
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None


@contextlib.contextmanager
def fake_file_service() -> Iterator[FakeFileService]:
    """A running fake File service on a free 127.0.0.1 port, stopped on exit."""
    service = FakeFileService()
    with service:
        yield service


@dataclass(frozen=True)
class FakeShare:
    """What a test needs to reach one fresh share of the fake."""

    connection_string: str
    share: str
    service: FakeFileService


@pytest.fixture(scope="session")
def fake_file_service_session() -> Iterator[FakeFileService]:
    """One fake File service for the whole session (each test takes its own share)."""
    with fake_file_service() as service:
        yield service


@pytest.fixture
def azure_files_share(fake_file_service_session: FakeFileService) -> Iterator[FakeShare]:
    """A fresh, not yet created share name on the session's fake File service."""
    service = fake_file_service_session
    share = f"ws{uuid.uuid4().hex[:12]}"
    yield FakeShare(service.connection_string, share, service)
    with service.lock:
        service.shares.pop(share, None)
        service.faults.clear()
        service.page_size = PAGE_SIZE
        service.requests.clear()
