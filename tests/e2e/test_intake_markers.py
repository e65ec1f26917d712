"""Storage round trips per delivery, counted at real proxies in front of Azurite's table
and queue endpoints, with the dedup outcome each case must keep.

3 calls for a new commit (claim, message, record), 3 for its redelivery, 4 for a new
delivery of a commit whose job is live, 5 for that delivery's redelivery.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_sync.jobs import FAILED, QUEUED
from tests.pipeline_support import Client, Stack, delivery_headers, make_stack, push_payload
from tests.storage_proxy import StorageProxy, storage_proxy

pytestmark = pytest.mark.azurite
WEBHOOK = "/api/github/webhook"


@dataclasses.dataclass
class Proxied:
    stack: Stack
    tables: StorageProxy
    queue: StorageProxy

    def calls(self) -> list[tuple[str, str]]:
        return [*self.tables.seen, *self.queue.seen]

    def reset(self) -> None:
        self.tables.seen.clear()
        self.queue.seen.clear()


def _endpoint(storage: str, name: str) -> str:
    found = re.search(rf"{name}=(http://[^/;]+)/", storage)
    assert found is not None
    return found.group(1)


@pytest.fixture()
def proxied(storage: str, tmp_path: Path) -> Iterator[Proxied]:
    with (
        storage_proxy(_endpoint(storage, "TableEndpoint")) as tables,
        storage_proxy(_endpoint(storage, "QueueEndpoint")) as queue,
    ):
        conn = storage.replace(_endpoint(storage, "TableEndpoint"), tables.url).replace(
            _endpoint(storage, "QueueEndpoint"), queue.url
        )
        yield Proxied(make_stack(conn, tmp_path), tables, queue)


def _post(http: Client, proxied: Proxied, body: bytes, delivery: str) -> tuple[int, dict, int]:
    """(status, answer, storage calls it made)."""
    proxied.reset()
    r = http.post(WEBHOOK, content=body, headers=delivery_headers(body, delivery=delivery))
    return r.status_code, r.json(), len(proxied.calls())


def _warm(proxied: Proxied, http: Client) -> None:
    """Tables and queue created (first-use calls are not what is counted)."""
    body = push_payload("f" * 40)
    assert http.post(WEBHOOK, content=body, headers=delivery_headers(body)).status_code == 202
    proxied.stack.drain()


def test_calls_per_delivery_and_their_dedup_outcomes(proxied: Proxied):
    stack = proxied.stack
    with Client(stack.ctx) as http:
        _warm(proxied, http)
        commit = "a" * 40
        body = push_payload(commit)

        status, first, calls = _post(http, proxied, body, "delivery-a")
        assert (202, "queued", 3) == (status, first["status"], calls)
        assert [m for m, _ in proxied.queue.seen] == ["POST"]  # one message sent
        job_id = first["job_id"]

        status, doc, calls = _post(http, proxied, body, "delivery-a")  # GitHub redelivers
        assert (200, "duplicate", job_id, 3) == (status, doc["status"], doc["job_id"], calls)

        status, doc, calls = _post(http, proxied, body, "delivery-b")  # another push event
        assert (200, "duplicate", job_id, 4) == (status, doc["status"], doc["job_id"], calls)

        status, doc, calls = _post(http, proxied, body, "delivery-b")
        assert (200, "duplicate", job_id, 5) == (status, doc["status"], doc["job_id"], calls)
        assert not proxied.queue.seen  # none of the duplicates sent a message

    assert [json.loads(m)["job_id"] for m in stack.drain()] == [job_id]
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and (job.status, job.commit) == (QUEUED, commit)


def test_a_redelivery_names_its_job_after_the_commit_was_claimed_again(proxied: Proxied):
    """When a commit's job is over (here: failed), a new delivery takes the commit over
    with a new job; a redelivery of the first delivery still names the first job, and
    the new delivery's redelivery the new one."""
    stack = proxied.stack
    with Client(stack.ctx) as http:
        _warm(proxied, http)
        body = push_payload("b" * 40)
        status, first, _ = _post(http, proxied, body, "delivery-1")
        assert status == 202
        old = stack.ctx.jobs.get(first["job_id"])
        assert old is not None
        stack.ctx.jobs.save(dataclasses.replace(old, status=FAILED))

        status, second, _ = _post(http, proxied, body, "delivery-2")
        assert (202, "queued") == (status, second["status"])
        assert second["job_id"] != old.job_id

        status, doc, _ = _post(http, proxied, body, "delivery-1")
        assert (200, "duplicate", old.job_id) == (status, doc["status"], doc["job_id"])
        status, doc, _ = _post(http, proxied, body, "delivery-2")
        assert (200, "duplicate", second["job_id"]) == (status, doc["status"], doc["job_id"])

    assert [json.loads(m)["job_id"] for m in stack.drain()] == [old.job_id, second["job_id"]]


def test_a_delivery_without_an_id_of_a_live_commit_costs_three_calls(proxied: Proxied):
    """No delivery id: nothing to remember for a redelivery, so no marker of its own."""
    stack = proxied.stack
    with Client(stack.ctx) as http:
        _warm(proxied, http)
        body = push_payload("c" * 40)
        status, first, _ = _post(http, proxied, body, "with-an-id")
        assert status == 202
        proxied.reset()
        headers = {k: v for k, v in delivery_headers(body).items() if k != "X-GitHub-Delivery"}
        r = http.post(WEBHOOK, content=body, headers=headers)
        assert (200, "duplicate", first["job_id"]) == (
            r.status_code,
            r.json()["status"],
            r.json()["job_id"],
        )
        assert len(proxied.calls()) == 3
