"""A sync whose workspace lease could not be renewed stops before its next write.

Real Azurite, real git, the real worker: the lease is broken (a refused renewal) or its
storage cut off (renewals that never answer) while the sync writes; the sync stops,
leaves no manifest (the usual repairable state), and a second holder then syncs.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from gitops_sync import intake, worker
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.leases import LeaseLost, WorkspaceLeases
from gitops_sync.jobs import QUEUED, SUCCEEDED
from tests.gitrepo import expected_files, workspace_files
from tests.pipeline_support import Stack, delivery_headers, make_stack, push_payload

pytestmark = pytest.mark.azurite
FILES = 40


class _Lost(logging.Handler):
    """Sets ``event`` when the holder logs that it lost the lock."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("lost the lock on workspace"):
            self.event.set()


@pytest.fixture()
def lost() -> Iterator[threading.Event]:
    handler = _Lost()
    logger = logging.getLogger("gitops_sync")
    logger.addHandler(handler)
    try:
        yield handler.event
    finally:
        logger.removeHandler(handler)


class InterruptedStore(DirectoryStore):
    """A real directory store whose first file write calls ``interrupt`` (which fails the
    lease) and then waits until the holder has noticed; no write starts after that."""

    def __init__(self, root: Path, interrupt: threading.Event, lost: threading.Event) -> None:
        super().__init__(root)
        self.interrupt, self.lost = interrupt, lost
        self.writes_started = 0
        self._mutex = threading.Lock()

    @property
    def local_root(self) -> None:  # type: ignore[override]
        # Python's own writes (the manifest path): where a lapse can land mid-file. The
        # index path, where git writes in batches, is covered in tests/e2e/test_sync_index.py.
        return None

    def write_file(self, path: str, mode: int, chunks: Iterable[bytes]) -> str:
        with self._mutex:
            self.writes_started += 1
        self.interrupt.set()
        assert self.lost.wait(60), "the holder never noticed its lease was gone"
        return super().write_file(path, mode, chunks)


def _queued_job(stack: Stack) -> tuple[str, str, str]:
    for i in range(FILES):
        stack.repo.write(f"dir-{i % 4}/file-{i}.txt", f"content {i}\n" * 50)
    commit = stack.repo.commit("many files")
    body = push_payload(commit)
    answer = intake.receive(stack.ctx, delivery_headers(body), body)
    assert answer.body is not None
    [message] = stack.drain()
    return commit, answer.body["job_id"], message


def _run_interrupted(
    stack: Stack, store: InterruptedStore, message: str, fail_lease: Callable[[], None]
) -> LeaseLost:
    """Handle ``message`` with ``store``; ``fail_lease`` runs once the first write starts."""

    def interrupter() -> None:
        if store.interrupt.wait(60):
            fail_lease()

    stack.ctx.workspace_store = lambda _conn=None: store  # type: ignore[method-assign]
    t = threading.Thread(target=interrupter)
    t.start()
    try:
        with pytest.raises(LeaseLost) as raised:
            worker.handle_message(stack.ctx, message, 1)
    finally:
        store.interrupt.set()
        t.join()
    return raised.value


def _second_holder_syncs(stack: Stack, commit: str, job_id: str, message: str) -> None:
    stack.ctx.workspace_store = lambda _conn=None: DirectoryStore(stack.workspace)  # type: ignore[method-assign]
    worker.handle_message(stack.ctx, message, 2)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and (SUCCEEDED, 2) == (job.status, job.attempts), job and job.error
    assert expected_files(stack.repo.path, commit) == workspace_files(stack.workspace)


def _assert_stopped(stack: Stack, store: InterruptedStore, job_id: str) -> None:
    # The writes already under way finish; none starts after the loss, no manifest is written.
    assert not (stack.workspace / ".gitops-sync/manifest.json").exists()
    written = [p for p in workspace_files(stack.workspace) if p.startswith("dir-")]
    assert store.writes_started == len(written) < FILES
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and QUEUED == job.status and "lost the lock" in (job.error or "")


def test_a_refused_renewal_stops_the_sync_and_a_second_holder_proceeds(
    storage: str, tmp_path: Path, lost: threading.Event
):
    """When another party breaks the lease mid-sync, the next renewal is refused, the
    sync writes nothing more and no manifest, the job stays queued, and a second
    holder then takes the lease and syncs the commit exactly."""
    stack = make_stack(storage, tmp_path)
    container = f"l{uuid.uuid4().hex[:12]}"
    stack.ctx.leases = WorkspaceLeases.from_connection_string(
        storage, container, duration=15, renew_every=0.2
    )
    commit, job_id, message = _queued_job(stack)
    store = InterruptedStore(stack.workspace, threading.Event(), lost)

    def break_lease() -> None:
        blob = BlobServiceClient.from_connection_string(storage).get_blob_client(
            container, "default.lock"
        )
        BlobLeaseClient(blob).break_lease(lease_break_period=0)

    err = _run_interrupted(stack, store, message, break_lease)
    assert "renewing it failed" in str(err)
    _assert_stopped(stack, store, job_id)
    _second_holder_syncs(stack, commit, job_id, message)


class CuttableProxy:
    """A TCP forwarder on 127.0.0.1 to ``port``; ``cut()`` closes it and every connection."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.cut_off = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_off.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_off.set()
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way
        self.listener.close()
        for s in self.sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@contextmanager
def proxied_blob_storage(storage: str) -> Iterator[tuple[str, CuttableProxy]]:
    """``storage`` with its blob endpoint behind a ``CuttableProxy``."""
    parts = dict(p.split("=", 1) for p in storage.split(";") if p)
    endpoint = parts["BlobEndpoint"]  # http://127.0.0.1:PORT/devstoreaccount1
    port = int(endpoint.split(":")[2].split("/")[0])
    proxy = CuttableProxy(port)
    try:
        yield storage.replace(f":{port}/", f":{proxy.port}/"), proxy
    finally:
        proxy.cut()


@pytest.mark.slow
def test_renewals_that_never_get_through_stop_the_sync_before_the_lease_lapses(
    storage: str, tmp_path: Path, lost: threading.Event
):
    """When the lease's storage cannot be reached, renewals are retried until the lease
    is about to lapse; then the sync stops writing, and once the lease has lapsed a
    second holder takes it and syncs the commit exactly."""
    stack = make_stack(storage, tmp_path)
    container = f"l{uuid.uuid4().hex[:12]}"
    commit, job_id, message = _queued_job(stack)
    store = InterruptedStore(stack.workspace, threading.Event(), lost)
    with proxied_blob_storage(storage) as (via_proxy, proxy):
        stack.ctx.leases = WorkspaceLeases.from_connection_string(
            via_proxy, container, duration=15, renew_every=0.2
        )
        err = _run_interrupted(stack, store, message, proxy.cut)
    assert "lost the lock" in str(err)
    _assert_stopped(stack, store, job_id)
    stack.ctx.leases = WorkspaceLeases.from_connection_string(storage, container, duration=15)
    stack.ctx.lease_wait_s = 60.0  # the cut-off holder's lease runs out on its own
    _second_holder_syncs(stack, commit, job_id, message)
