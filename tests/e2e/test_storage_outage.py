"""A 15 s storage outage: Azurite, persisting to disk, stopped and restarted on the same ports.

Deliveries keep coming throughout; none that got 202 may be lost, and during the
outage the answers are fast 503s with ``Retry-After``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from gitops_sync.adapters.azurite import Azurite
from gitops_sync.http.app import create_app
from gitops_sync.jobs import QUEUED
from tests.pipeline_support import Client, delivery_headers, make_stack, push_payload

pytestmark = [pytest.mark.azurite, pytest.mark.slow]
OUTAGE_S = 15.0


def test_an_outage_loses_no_accepted_delivery(tmp_path: Path) -> None:
    """Deliveries sent before, during and after a 15 s outage: every 202 has its job
    record and exactly one queue message afterwards, and every 503 has Retry-After."""
    azurite = Azurite(location=tmp_path / "azurite").start()
    try:
        stack = make_stack(azurite.connection_string, tmp_path)
        http = Client(stack.ctx)
        http.app = create_app(stack.ctx)
        answers: list[tuple[int, dict, str | None]] = []
        stop = threading.Event()

        def deliver() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                body = push_payload(f"{i:040x}")
                r = http.post("/api/github/webhook", content=body, headers=delivery_headers(body))
                doc = r.json() if r.content else {}
                answers.append((r.status_code, doc, r.headers.get("retry-after")))
                stop.wait(0.2)

        sender = threading.Thread(target=deliver)
        sender.start()
        try:
            _wait(lambda: sum(1 for a in answers if a[0] == 202) >= 5, "202s before")
            ports = dict(azurite.ports)
            azurite.stop()  # SIGTERM: a clean stop, its data on disk
            during = len(answers)
            time.sleep(OUTAGE_S)  # the outage itself is what is under test
            _wait(lambda: any(a[0] == 503 for a in answers[during:]), "503s during")
            azurite = Azurite(location=tmp_path / "azurite", ports=ports).start()
            after = len(answers)
            _wait(lambda: sum(1 for a in answers[after:] if a[0] == 202) >= 5, "202s after")
        finally:
            stop.set()
            sender.join(timeout=120)
        accepted = [doc["job_id"] for status, doc, _ in answers if status == 202]
        assert all(retry == "5" for status, _, retry in answers if status == 503)
        assert {200, 202, 503} >= {status for status, _, _ in answers}
        for job_id in accepted:
            job = stack.ctx.jobs.get(job_id)
            assert job is not None and job.status == QUEUED, job_id
        queued = [json.loads(m)["job_id"] for m in stack.drain()]
        assert [queued.count(j) for j in accepted] == [1] * len(accepted)
    finally:
        azurite.stop()


def _wait(condition, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
