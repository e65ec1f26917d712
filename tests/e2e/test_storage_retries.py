"""How long the storage clients wait between retries of one failing call.

A real HTTP proxy in front of Azurite answers 500 to every request; the back-offs
the SDK's retry policies ask the transport to sleep are recorded (and not slept). The queue
SDK has its own retry policy (15 s, then 18 s, ...), which ignores azure-core's
``retry_backoff_factor``: without ``QuickRetry`` one failing call would take a minute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from azure.core.pipeline.transport import HttpTransport

from gitops_sync.adapters.queues import JobQueue
from gitops_sync.adapters.tables import Tables
from gitops_sync.core.errors import StorageError
from tests.storage_proxy import StorageProxy, storage_proxy

pytestmark = pytest.mark.azurite


@pytest.fixture()
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every transport's sleeps (the tables SDK wraps ours, so patch the base class)."""
    durations: list[float] = []
    monkeypatch.setattr(HttpTransport, "sleep", lambda self, duration: durations.append(duration))
    return durations


def _proxied(storage: str, service: str) -> Iterator[tuple[str, StorageProxy]]:
    found = re.search(rf"{service}Endpoint=(http://[^/;]+)/", storage)
    assert found is not None
    with storage_proxy(found.group(1)) as proxy:
        yield (
            re.sub(
                rf"{service}Endpoint=http://[^/;]+/", f"{service}Endpoint={proxy.url}/", storage
            ),
            proxy,
        )


@pytest.fixture()
def queue_via_proxy(storage: str) -> Iterator[tuple[str, StorageProxy]]:
    yield from _proxied(storage, "Queue")


@pytest.fixture()
def tables_via_proxy(storage: str) -> Iterator[tuple[str, StorageProxy]]:
    yield from _proxied(storage, "Table")


def test_a_failing_queue_call_is_retried_three_times_after_0_2_0_4_0_8_s(queue_via_proxy, slept):
    conn, proxy = queue_via_proxy
    queue = JobQueue.from_connection_string(conn, "retries")
    queue.ensure()  # through the proxy, before it fails
    proxy.fail_when(lambda method, path: True)
    with pytest.raises(StorageError):
        queue.receive()
    assert len(proxy.failed) == 4  # the call and its three retries
    assert slept == [0.2, 0.4, 0.8]
    proxy.heal()
    assert queue.receive() == []  # the same client works again


def test_a_failing_table_call_is_retried_three_times_within_1_2_s(tables_via_proxy, slept):
    conn, proxy = tables_via_proxy
    tables = Tables.from_connection_string(conn, prefix="retries")
    tables.check()  # creates the tables, through the proxy, before it fails
    proxy.fail_when(lambda method, path: True)
    with pytest.raises(StorageError):
        tables.get("jobs", "pk", "rk")
    assert len(proxy.failed) == 4
    assert slept == [0.4, 0.8]  # azure-core retries the first time at once
    proxy.heal()
    assert tables.get("jobs", "pk", "rk") is None
