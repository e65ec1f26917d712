"""The opt-in timeline (``GITOPS_SYNC_TIMELINE``): what ``serve`` records for a webhook
delivery, and that it is off by default (``bench_webhook.py --timeline`` reads it)."""

from __future__ import annotations

import gc
import json
import uuid
from pathlib import Path

import httpx
import pytest

from gitops_sync import timeline
from tests.e2e.local_stack_support import StackProcess, server_env
from tests.pipeline_support import delivery_headers, push_payload


def test_off_by_default_every_hook_is_a_no_op():
    assert timeline.start("") is False
    timeline.mark("handler", "r1")
    timeline.mark("call_start", "", "POST t")
    assert not timeline.on()
    assert timeline._on_gc not in gc.callbacks


def test_garbage_collections_are_recorded_with_their_generation(tmp_path: Path):
    out = tmp_path / "t.jsonl"
    assert timeline.start(str(out))
    try:
        gc.collect()
        timeline.write(str(out))
    finally:
        timeline.stop()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e[1] for e in events if e[3] == "2"][:2] == ["gc_start", "gc_stop"]
    assert timeline._on_gc not in gc.callbacks  # stopped


@pytest.mark.azurite
def test_serve_records_each_step_of_a_delivery_and_writes_them_at_exit(
    storage: str, tmp_path: Path
):
    out = tmp_path / "timeline.jsonl"
    env = server_env(storage, tmp_path, GITOPS_SYNC_TIMELINE=str(out))
    server = StackProcess(["serve", "--port", "0"], env, tmp_path)
    try:
        url = server.wait_for(r"listening on (\S+)").group(1)
        body = push_payload(uuid.uuid4().hex + "0" * 8)
        headers = {**delivery_headers(body, delivery=str(uuid.uuid4())), "X-Request-Id": "r1"}
        r = httpx.post(url + "/api/github/webhook", content=body, headers=headers, timeout=30)
        assert 202 == r.status_code, r.text
        assert 0 == server.terminate()
    finally:
        server.close()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [(e[1], e[3]) for e in sorted(events) if e[2] == "r1"]
    steps = [name for name, _ in mine if name in ("handler", "body", "intake_start", "intake_end")]
    assert steps == ["handler", "body", "intake_start", "intake_end"]
    assert mine[-1] == ("answer", "202")
    calls = [what for name, what in mine if name == "call_start"]
    assert calls == ["POST gitopssyncmarkers", "POST messages", "POST gitopssyncjobs"]
    assert len(calls) == sum(1 for name, _ in mine if name == "call_end")
    assert any(e[1] == "loop_lag" for e in events)  # the event loop's probe ran
