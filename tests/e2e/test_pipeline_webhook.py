"""The webhook against a real Azurite: the contract's answer table, dedup, isolation, secrets."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitops_sync import intake
from gitops_sync.connections import Connection
from gitops_sync.core.webhook import MAX_BODY, sign
from gitops_sync.jobs import QUEUED
from tests.pipeline_support import (
    REPOSITORY,
    SECRET,
    Client,
    Stack,
    client,
    delivery_headers,
    make_stack,
    push_payload,
)

pytestmark = pytest.mark.azurite
WEBHOOK = "/api/github/webhook"


@pytest.fixture()
def stack(storage: str, tmp_path: Path) -> Stack:
    return make_stack(storage, tmp_path)


@pytest.fixture()
def http(stack: Stack) -> Iterator[Client]:
    with client(stack.ctx) as c:
        yield c


def _commit(stack: Stack, text: str = "hello") -> str:
    stack.repo.write("site/index.html", text)
    return stack.repo.commit(text)


def _post(http: Client, body: bytes, headers: dict[str, str]) -> tuple[int, dict | None]:
    r = http.post(WEBHOOK, content=body, headers=headers)
    return r.status_code, (r.json() if r.content else None)


@pytest.mark.parametrize(
    "headers_for",
    [
        pytest.param(lambda b: {"X-GitHub-Event": "push"}, id="missing"),
        pytest.param(
            lambda b: {"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=" + "0" * 40},
            id="sha1-only",
        ),
        pytest.param(
            lambda b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=xyz"},
            id="malformed",
        ),
        pytest.param(
            lambda b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("other", b)},
            id="wrong-secret",
        ),
        pytest.param(
            lambda b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(SECRET, b + b" ")},
            id="tampered-body",
        ),
    ],
)
def test_bad_signature_is_401_and_queues_nothing(stack: Stack, http: Client, headers_for):
    """Missing, SHA-1-only, malformed or wrong signatures get 401 and no job is queued."""
    body = push_payload(_commit(stack))
    status, doc = _post(http, body, headers_for(body))
    assert (status, doc) == (401, None)
    assert stack.ctx.jobs.list() == []


def test_no_secret_configured_answers_401_to_everything(storage: str, tmp_path: Path):
    """Without GITHUB_WEBHOOK_SECRET even a ping signed with some secret gets 401."""
    stack = make_stack(storage, tmp_path, secret=None)
    with client(stack.ctx) as http:
        for event in ("ping", "push"):
            body = push_payload("a" * 40)
            status, _ = _post(http, body, delivery_headers(body, event=event, secret="guess"))
            assert status == 401


def test_body_over_25_mib_is_413(stack: Stack, http: Client):
    """A body one byte over 25 MiB is refused with 413, declared or streamed without length."""
    big = b"x" * (MAX_BODY + 1)
    status, _ = _post(http, big, delivery_headers(big))
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(26):
            yield b"y" * (1 << 20)

    unchecked = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    r = http.post(WEBHOOK, content=chunks(), headers=unchecked)
    assert r.status_code == 413


def _doc(**fields: object) -> bytes:
    doc = {"ref": "refs/heads/main", "after": "a" * 40, "repository": {"full_name": REPOSITORY}}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(
            json.dumps({"after": "a" * 40, "repository": {"full_name": REPOSITORY}}).encode(),
            id="no-ref",
        ),
        pytest.param(
            json.dumps(
                {"ref": "refs/heads/main", "repository": {"full_name": REPOSITORY}}
            ).encode(),
            id="no-after",
        ),
        pytest.param(
            json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode(), id="no-repository"
        ),
        pytest.param(
            json.dumps(
                {"ref": "refs/heads/main", "after": "zz", "repository": {"full_name": REPOSITORY}}
            ).encode(),
            id="after-not-a-commit",
        ),
    ],
)
def test_signed_but_unusable_push_is_400(stack: Stack, http: Client, body: bytes):
    """A correctly signed body that is not a JSON object, or a push missing a field, is 400."""
    status, doc = _post(http, body, delivery_headers(body))
    assert status == 400
    assert doc is not None and doc["error"]
    assert stack.ctx.jobs.list() == []


def test_ping_is_pong(stack: Stack, http: Client):
    """A signed ping answers 200 pong."""
    body = json.dumps({"zen": "Keep it simple.", "repository": {"full_name": REPOSITORY}}).encode()
    assert _post(http, body, delivery_headers(body, event="ping")) == (200, {"status": "pong"})


def test_push_to_tracked_branch_is_queued_once(stack: Stack, http: Client):
    """A push to the tracked branch is 202 queued; its redelivery and a second delivery of
    the same commit are duplicates naming the same job, and only one message is queued."""
    commit = _commit(stack)
    body = push_payload(commit)
    headers = delivery_headers(body, delivery="delivery-1")
    status, doc = _post(http, body, headers)
    assert status == 202
    assert doc is not None
    assert doc == {"status": "queued", "job_id": doc["job_id"], "commit": commit}
    job = stack.ctx.jobs.get(doc["job_id"])
    assert job is not None and (job.status, job.commit) == (QUEUED, commit)

    assert _post(http, body, headers) == (200, {"status": "duplicate", "job_id": doc["job_id"]})
    again = delivery_headers(body, delivery="delivery-2")
    assert _post(http, body, again) == (200, {"status": "duplicate", "job_id": doc["job_id"]})
    assert len(stack.drain()) == 1


@pytest.mark.parametrize(
    ("event", "payload", "reason_word"),
    [
        pytest.param("push", dict(ref="refs/heads/feature"), "feature", id="other-branch"),
        pytest.param("push", dict(ref="refs/tags/v1.0"), "tag", id="tag"),
        pytest.param("push", dict(deleted=True, commit="0" * 40), "deleted", id="deletion"),
        pytest.param("push", dict(repository="someone/else"), "not connected", id="unconfigured"),
        pytest.param("issues", {}, "issues", id="other-event"),
    ],
)
def test_ignored_deliveries(stack: Stack, http: Client, event, payload, reason_word):
    """Other branches, tags, deletions, unconfigured repositories and other events are
    answered 200 ignored with a reason, and queue nothing."""
    commit = payload.pop("commit", None) or _commit(stack)
    body = push_payload(commit, **payload)
    status, doc = _post(http, body, delivery_headers(body, event=event))
    assert status == 200
    assert doc is not None and doc["status"] == "ignored"
    assert reason_word in doc["reason"]
    assert stack.ctx.jobs.list() == []
    assert stack.drain() == []


def test_branch_deletion_never_empties_the_workspace(stack: Stack, http: Client):
    """After a synced push, the branch's deletion is ignored and the workspace keeps its files."""
    body = push_payload(_commit(stack, "kept"))
    assert _post(http, body, delivery_headers(body))[0] == 202
    stack.run_queue()
    gone = push_payload("0" * 40, deleted=True)
    assert _post(http, gone, delivery_headers(gone))[1]["status"] == "ignored"  # type: ignore[index]
    assert stack.run_queue() == []
    assert (stack.workspace / "site/index.html").read_text() == "kept"


def test_twenty_concurrent_deliveries_of_one_commit_make_one_job(stack: Stack):
    """20 threads delivering one commit at the same instant get exactly one queued answer
    and 19 duplicates naming that job; one job record and one message exist."""
    commit = _commit(stack)
    body = push_payload(commit)
    barrier = threading.Barrier(20)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def deliver(i: int) -> None:
        headers = delivery_headers(body, delivery=f"concurrent-{i}")
        barrier.wait()
        answer = intake.receive(stack.ctx, headers, body)
        with lock:
            answers.append((answer.status, answer.body or {}))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queued = [doc for status, doc in answers if status == 202]
    assert len(queued) == 1
    job_id = queued[0]["job_id"]
    dups = [doc for status, doc in answers if status == 200]
    assert dups == [{"status": "duplicate", "job_id": job_id}] * 19
    assert [j.job_id for j in stack.ctx.jobs.list()] == [job_id]
    assert len(stack.drain()) == 1


def test_secret_of_repo_a_cannot_trigger_repo_b(stack: Stack, http: Client):
    """A delivery for repository B signed with A's secret is 401; signed with B's it queues."""
    stack.app_settings["B_WEBHOOK_SECRET"] = "whsec-b-Lm4"
    stack.ctx.connections.add(
        Connection(
            id="b",
            repository="acme/b",
            branch="main",
            repo_url=str(stack.repo.path),
            secret_setting="B_WEBHOOK_SECRET",
            share="b-share",  # its own workspace (this test never syncs it)
        )
    )
    body = push_payload(_commit(stack), repository="acme/b")
    assert _post(http, body, delivery_headers(body, secret=SECRET))[0] == 401
    assert stack.ctx.jobs.list(connection="b") == []
    status, doc = _post(http, body, delivery_headers(body, secret="whsec-b-Lm4"))
    assert status == 202 and doc is not None
    job = stack.ctx.jobs.get(doc["job_id"])
    assert job is not None and job.connection == "b"


def test_secrets_never_reach_logs_or_tables(storage: str, tmp_path: Path, caplog):
    """Through deliveries and a job that fails on a URL carrying the token, neither the
    webhook secret nor GIT_TOKEN appears in any log record or table entity."""
    token = "ghp-supersecret-Tok3n"
    stack = make_stack(
        storage,
        tmp_path,
        repo_url=f"http://x-access-token:{token}@127.0.0.1:9/r.git?t={token}",
        token=token,
    )
    caplog.set_level(logging.DEBUG)
    with client(stack.ctx) as http:
        body = push_payload(_commit(stack))
        assert _post(http, body, delivery_headers(body))[0] == 202
        _post(http, body, delivery_headers(body, secret="wrong"))
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        stack.run_queue()
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    dumped = json.dumps(
        [
            e
            for role in ("jobs", "markers", "state", "connections")
            for e in stack.ctx.tables.query(role, "PartitionKey ne ''")
        ],
        default=str,
    )
    [job] = stack.ctx.jobs.list()
    assert job.error is not None and "127.0.0.1" in job.error and "?t=" not in job.error
    assert job.job_id in text  # the job was logged, just not its secrets
    for secret in (SECRET, token):
        assert secret not in text
        assert secret not in dumped


_headers = st.dictionaries(
    st.sampled_from(
        [
            "X-GitHub-Event",
            "X-GitHub-Delivery",
            "X-Hub-Signature-256",
            "X-Hub-Signature",
            "Content-Type",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_push_like = st.fixed_dictionaries(
    {},
    optional={
        "ref": st.one_of(st.just("refs/heads/main"), st.text(max_size=30), st.integers()),
        "after": st.one_of(st.just("a" * 40), st.just("0" * 40), st.text(max_size=70), st.none()),
        "deleted": st.one_of(st.booleans(), st.none(), st.text(max_size=3)),
        "repository": st.one_of(
            st.fixed_dictionaries({"full_name": st.one_of(st.just(REPOSITORY), st.integers())}),
            _json,
        ),
    },
)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda d: json.dumps(d).encode()),
    _push_like.map(lambda d: json.dumps(d).encode()),
)


@pytest.mark.slow
def test_fuzzed_deliveries_never_give_5xx(storage: str, tmp_path_factory):
    """Malformed headers and bodies, signed or not, never give a 5xx or raise."""
    stack = make_stack(storage, tmp_path_factory.mktemp("fuzz"))
    _commit(stack)

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        headers=_headers,
        body=_bodies,
        signed=st.booleans(),
        event=st.sampled_from(["push", "ping", "x"]),
    )
    def run(headers: dict[str, str], body: bytes, signed: bool, event: str) -> None:
        h = dict(headers)
        if signed:
            h["X-Hub-Signature-256"] = sign(SECRET, body)
            h["X-GitHub-Event"] = event
        r = http.post(WEBHOOK, content=body, headers=h)
        assert r.status_code < 500, r.text

    with client(stack.ctx) as http:
        run()


@pytest.mark.parametrize("age_s", [pytest.param(0, id="young"), pytest.param(600, id="old")])
def test_markers_left_by_a_crashed_intake_are_adopted(stack: Stack, http: Client, age_s: int):
    """Markers naming a job that was never recorded (an intake that stopped midway) are
    adopted by the redelivery, young or old: it queues that job, which then exists."""
    from datetime import UTC, datetime, timedelta

    from gitops_sync.intake import _delivery_key

    commit = _commit(stack)
    since = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat()
    for key in (_delivery_key("crashed-delivery"), "c-" + commit):
        marker = {"PartitionKey": "default", "RowKey": key, "job_id": "ghost", "created_at": since}
        assert stack.ctx.tables.insert("markers", marker)
    body = push_payload(commit)
    status, doc = _post(http, body, delivery_headers(body, delivery="crashed-delivery"))
    assert (202, {"status": "queued", "job_id": "ghost", "commit": commit}) == (status, doc)
    job = stack.ctx.jobs.get("ghost")
    assert job is not None and (job.status, job.commit) == (QUEUED, commit)
    assert [json.loads(m)["job_id"] for m in stack.drain()] == ["ghost"]


def test_redelivery_racing_a_losing_first_delivery_names_the_real_job(
    stack: Stack, http: Client, monkeypatch: pytest.MonkeyPatch
):
    """A redelivery that reads the marker while the first delivery still re-points it to
    the commit's job answers with that job, never the loser's id that no record will have."""
    from gitops_sync.connections import now_iso
    from gitops_sync.intake import _delivery_key

    commit = _commit(stack, "race")
    body = push_payload(commit)
    status, first = _post(http, body, delivery_headers(body, delivery="first-delivery"))
    assert (202, "queued") == (status, first["status"])  # type: ignore[index]
    real_job = first["job_id"]  # type: ignore[index]
    key = _delivery_key("second-delivery")
    # the state a racing second delivery leaves between losing the commit and re-pointing
    marker = {"PartitionKey": "default", "RowKey": key, "job_id": "loser", "created_at": now_iso()}
    assert stack.ctx.tables.insert("markers", marker)
    get_job = stack.ctx.jobs.get
    looked_up: list[str] = []

    def get_and_repoint(job_id: str):  # type: ignore[no-untyped-def]
        # The race, made certain: the loser re-points its marker right after the
        # duplicate found the loser's id had no job record.
        looked_up.append(job_id)
        found = get_job(job_id)
        if job_id == "loser" and looked_up.count("loser") == 1:
            assert stack.ctx.tables.replace("markers", {**marker, "job_id": real_job})
        return found

    monkeypatch.setattr(stack.ctx.jobs, "get", get_and_repoint)
    status, doc = _post(http, body, delivery_headers(body, delivery="second-delivery"))
    assert (200, "duplicate", real_job) == (status, doc["status"], doc["job_id"])  # type: ignore[index]
    assert "loser" in looked_up  # the duplicate did see the loser's marker first
