"""Benchmark: webhook acknowledgment latency under a sustained stream of signed pushes.

`gitops-sync serve` and Azurite run as their own processes; this one sends RATE
deliveries per second for DURATION seconds (new commits, GitHub redeliveries of the
same delivery id, and new deliveries of an already-pushed commit, racing), and 5
`GET /api/health` per second on the same server as the reference. Latency is
counted from each request's scheduled send time (no coordinated omission). Then it
checks that every distinct commit got exactly one job, and one queue message. Run:

    .venv/bin/python bench/bench_webhook.py [--duration 60] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

OUT = Path(__file__).resolve().parent / "out" / "webhook"
CLI = str(Path(sys.executable).parent / "gitops-sync")
SECRET = "bench-secret-0123456789abcdef"
KEY = "bench-api-key-0123456789"
REPOSITORY = "bench/repo"


@dataclass
class Sent:
    kind: str  # new | redelivery | same-commit | health
    commit: str | None
    latency_ms: float
    status: int  # 0: no answer (a transport error, named in ``error``)
    body: dict = field(default_factory=dict)
    retry_after: str | None = None
    error: str | None = None
    #: with --timeline: the request's id, and when it was due, written, answered (monotonic ns)
    rid: str = ""
    times: tuple[int, int, int] = (0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def plan_deliveries(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, commit, delivery id): 70% new commits, 15% redeliveries, 15% same commit."""
    plan: list[tuple[str, str, str]] = []
    recent: list[tuple[str, str]] = []
    for _ in range(count):
        roll = rng.random()
        if recent and roll < 0.15:
            commit, delivery = rng.choice(recent[-20:])
            plan.append(("redelivery", commit, delivery))
        elif recent and roll < 0.30:
            commit, _ = rng.choice(recent[-20:])
            plan.append(("same-commit", commit, str(uuid.uuid4())))
        else:
            commit, delivery = rng.randbytes(20).hex(), str(uuid.uuid4())
            recent.append((commit, delivery))
            plan.append(("new", commit, delivery))
    return plan


def push_body(commit: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": commit,
            "repository": {"full_name": REPOSITORY, "name": "repo"},
            "head_commit": {"id": commit, "message": "bench"},
            "pusher": {"name": "bench"},
        }
    ).encode()


class LeanClient:
    """A minimal HTTP/1.1 client over kept-alive loopback connections.

    The load generator shares the server's two cores, so it must cost little: requests
    are pre-built bytes (signed before the clock starts), responses are parsed only as
    far as status, Content-Length, Retry-After and the JSON body. httpx cost more CPU per
    request than the server under test. As GitHub, it never queues a request on its
    side: with no idle connection it opens another. A connection idle for longer than
    ``max_idle_s`` is closed, not reused: the server closes it after its keep-alive
    timeout (uvicorn's: 5 s), and a request written just as it does so is dropped.
    """

    def __init__(
        self, host: str, port: int, timeout: float = 30.0, max_idle_s: float = 4.0
    ) -> None:
        self.host, self.port, self.timeout, self.max_idle_s = host, port, timeout, max_idle_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    @staticmethod
    def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of one request; raises OSError-likes on a drop."""
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < self.max_idle_s:
                break
            writer.close()  # the server may be closing it right now
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                status_line, *header_lines = head.decode("latin-1").split("\r\n")
                status = int(status_line.split(" ", 2)[1])
                headers = {}
                for line in header_lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return status, headers, body

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


#: what a dropped or refused connection looks like to the client (recorded, not fatal)
DROPPED = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError)


def signed_push(commit: str, delivery: str, rid: str = "") -> bytes:
    body = push_body(commit)
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + signature,
    }
    if rid:
        headers["X-Request-Id"] = rid  # the server's timeline names the request by it
    return LeanClient.request("POST", "/api/github/webhook", headers, body)


async def send_stream(
    url: str, duration: float, rate: float, seed: int, ids: bool = False
) -> list[Sent]:
    """Open loop: request i leaves at start + i/rate whatever happened to the others."""
    rng = random.Random(seed)
    plan = plan_deliveries(int(duration * rate), rng)
    health_rate = 5.0
    results: list[Sent] = []
    host, port = url.removeprefix("http://").split(":")
    client = LeanClient(host, int(port))
    # Everything is built before the clock starts: (send time, kind, commit, request bytes).
    schedule = [
        (i / rate, kind, commit, signed_push(commit, delivery, f"p{i}" if ids else ""))
        for i, (kind, commit, delivery) in enumerate(plan)
    ]

    # Health checks offset by half a slot so they rarely coincide with a push.
    def health(i: int) -> bytes:
        return LeanClient.request("GET", "/api/health", {"X-Request-Id": f"h{i}"} if ids else {})

    schedule += [((i + 0.5) / health_rate, "health", None, health(i))
                 for i in range(int(duration * health_rate))]  # fmt: skip
    schedule.sort(key=lambda item: item[0])

    async def one(at: float, kind: str, commit: str | None, raw: bytes, rid: str) -> None:
        sent = time.perf_counter()  # perf_counter is CLOCK_MONOTONIC on Linux
        try:
            status, headers, body = await client.send(raw)
        except DROPPED as exc:  # recorded, not fatal: who dropped it?
            latency = (time.perf_counter() - at) * 1000
            results.append(Sent(kind, commit, latency, 0, error=type(exc).__name__))
            return
        done = time.perf_counter()
        latency = (done - at) * 1000
        doc = json.loads(body) if body and kind != "health" else {}
        times = (int(at * 1e9), int(sent * 1e9), int(done * 1e9))
        results.append(
            Sent(kind, commit, latency, status, doc, headers.get("retry-after"), None, rid, times)
        )

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.2
    counters = {"push": 0, "health": 0}
    for offset, kind, commit, raw in schedule:
        at = start + offset
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        side = "health" if kind == "health" else "push"
        rid = f"{side[0]}{counters[side]}" if ids else ""
        counters[side] += 1
        task = asyncio.create_task(one(at, kind, commit, raw, rid))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    client.close()
    return results


def check_exactly_once(results: list[Sent]) -> tuple[list[str], list[str]]:
    """Every distinct commit got exactly one job (problems otherwise), or only 503s to retry;
    every duplicate answer names that job; every 503 carries Retry-After."""
    problems: list[str] = []
    notes: list[str] = []
    accepted: dict[str, set[str]] = defaultdict(set)
    named: dict[str, set[str]] = defaultdict(set)
    refused: dict[str, int] = defaultdict(int)
    answers: dict[str, int] = defaultdict(int)
    for s in results:
        if s.kind == "health":
            if s.status != 200:
                problems.append(f"health answered {s.status}")
            continue
        answers[s.commit or ""] += 1
        if s.status == 202 and s.body.get("status") == "queued":
            accepted[s.commit or ""].add(s.body["job_id"])
        elif s.status == 200 and s.body.get("status") == "duplicate":
            named[s.commit or ""].add(s.body["job_id"])
        elif s.status == 503:
            refused[s.commit or ""] += 1  # shed or storage overloaded: GitHub redelivers
            if not s.retry_after:
                problems.append(f"{s.kind} {s.commit}: 503 without Retry-After")
        else:
            problems.append(f"{s.kind} {s.commit}: {s.status} {s.body}")
    for commit in answers:
        jobs = accepted.get(commit, set())
        if len(jobs) > 1 or (not jobs and refused[commit] < answers[commit]):
            problems.append(f"commit {commit}: {len(jobs)} jobs accepted")
        elif jobs and not named.get(commit, set()) <= jobs:
            problems.append(f"commit {commit}: a duplicate answer named a job never queued")
    if refused:
        notes.append(f"{sum(refused.values())} deliveries refused with 503 (to be redelivered)")
    return problems, notes


def queue_depth(conn: str, queue: str) -> int:
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(conn, queue) as q:
        return int(q.get_queue_properties().approximate_message_count or 0)


def queued_job_ids(conn: str, queue: str) -> list[str]:
    """The job id of every message on the queue (each received once, hidden 10 min)."""
    from azure.storage.queue import BinaryBase64DecodePolicy, QueueClient

    ids: list[str] = []
    with QueueClient.from_connection_string(
        conn, queue, message_decode_policy=BinaryBase64DecodePolicy()
    ) as q:
        while True:
            got = list(q.receive_messages(max_messages=32, visibility_timeout=600))
            if not got:
                return ids
            ids += [json.loads(m.content)["job_id"] for m in got]


def job_records(conn: str) -> dict[str, str]:
    """Every job record: job id -> commit."""
    from azure.data.tables import TableClient

    with TableClient.from_connection_string(conn, "gitopssyncjobs") as t:
        return {str(e["RowKey"]): str(e.get("commit", "")) for e in t.list_entities()}


async def jobs_exist(url: str, job_ids: set[str]) -> int:
    """How many of ``job_ids`` the server's job API knows (all of them, if nothing was lost)."""
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(
        base_url=url, headers={"x-functions-key": KEY}, timeout=60
    ) as client:

        async def known(job_id: str) -> bool:
            async with sem:
                r = await client.get(f"/api/jobs/{job_id}")
                return r.status_code == 200 and r.json()["status"] == "queued"

        return sum(await asyncio.gather(*(known(j) for j in job_ids)))


def session_cpu_s(sid: int) -> float:
    """User + system CPU seconds so far of every live process in session ``sid`` (from /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(steal, all) jiffies of the whole machine so far (/proc/stat): the hypervisor's share."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[7], sum(fields)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` alone (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def unsigned_flood(url: str, pid: int, posts: int = 32, size: int = 25 << 20) -> dict:
    """``posts`` concurrent unsigned posts of ``size`` bytes each; the server's RSS
    (sampled every 20 ms) before, at its peak and after."""
    idle = rss_mb(pid)
    peak = idle
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.02)

    async def body() -> AsyncIterator[bytes]:
        chunk = b"x" * (1 << 20)
        for _ in range(size >> 20):
            yield chunk

    statuses: list[int | str] = []
    sampler = asyncio.create_task(sample())
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one() -> None:
            headers = {"X-GitHub-Event": "push", "Content-Length": str(size)}
            try:
                r = await client.post("/api/github/webhook", content=body(), headers=headers)
                statuses.append(r.status_code)
            except httpx.TransportError as exc:  # the server may close before we finish
                statuses.append(type(exc).__name__)

        await asyncio.gather(*(one() for _ in range(posts)))
    await asyncio.sleep(1.0)
    done.set()
    await sampler
    counts = {str(k): statuses.count(k) for k in sorted(set(statuses), key=str)}
    return {"idle_mb": round(idle, 1), "peak_mb": round(peak, 1),
            "after_mb": round(rss_mb(pid), 1), "answers": counts}  # fmt: skip


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2) if values else float("nan"),
        "mean_ms": round(statistics.fmean(values), 2) if values else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load")
    ap.add_argument("--rate", type=float, default=50.0, help="webhook deliveries per second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serve-args", default="", help="more options for `gitops-sync serve`")
    ap.add_argument(
        "--unsigned-flood",
        action="store_true",
        help="instead: 32 concurrent unsigned 25 MiB posts; report the server's RSS",
    )
    ap.add_argument(
        "--timeline",
        metavar="DIR",
        help="record a timeline of every side in DIR (see bench/timeline_report.py)",
    )
    args = ap.parse_args()

    from gitops_sync.adapters.azurite import Azurite

    timeline = Path(args.timeline).resolve() if args.timeline else None
    if timeline:
        timeline.mkdir(parents=True, exist_ok=True)
        for old in timeline.glob("*.jsonl"):
            old.unlink()
        # Azurite inherits these: its garbage collections and event-loop lag, recorded.
        probe = Path(__file__).resolve().parent / "probes" / "node_timeline.js"
        os.environ["NODE_OPTIONS"] = (
            os.environ.get("NODE_OPTIONS", "") + f" --require {probe}"
        ).strip()
        os.environ["NODE_TIMELINE_OUT"] = str(timeline / "node.jsonl")

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with Azurite() as azurite:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AzureWebJobsStorage", "SYNC_", "WORKSPACE_"))
        }
        env.update(
            AzureWebJobsStorage=azurite.connection_string,
            GITHUB_WEBHOOK_SECRET=SECRET,
            GITOPS_SYNC_API_KEY=KEY,
            SYNC_REPOSITORY=REPOSITORY,
            SYNC_REPO_URL=str(tmp / "no-repo"),  # never fetched: no worker runs
            SYNC_QUEUE=queue,
            WORKSPACE_ROOT=str(tmp / "ws"),
            GITOPS_SYNC_LOG_LEVEL="WARNING",
        )
        if timeline:
            env["GITOPS_SYNC_TIMELINE"] = str(timeline / "server.jsonl")
        port = free_port()
        log = (tmp / "serve.log").open("w")
        # Its own session: its CPU is counted with the intake processes it starts.
        server = subprocess.Popen(
            [CLI, "serve", "--port", str(port), *args.serve_args.split()],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                print((tmp / "serve.log").read_text(), file=sys.stderr)
                return 2
            if args.unsigned_flood:
                asyncio.run(send_stream(url, 1.0, 10, seed=args.seed + 1000))  # warm up
                flood = asyncio.run(unsigned_flood(url, server.pid))
                OUT.mkdir(parents=True, exist_ok=True)
                (OUT / "flood.json").write_text(json.dumps(flood, indent=2) + "\n")
                print(f"32 unsigned 25 MiB posts: server RSS {flood['idle_mb']} MB idle,"
                      f" {flood['peak_mb']} MB peak, {flood['after_mb']} MB after;"
                      f" answers {flood['answers']}")  # fmt: skip
                return 0
            # Warm-up: the first calls create tables and the queue; they are not measured.
            asyncio.run(send_stream(url, 1.0, 10, seed=args.seed + 1000))
            conn = azurite.connection_string
            warm_ids = set(queued_job_ids(conn, queue))
            warm_records = set(job_records(conn))

            # CPU seconds of each side during the measured stream: who the cores worked for.
            azurite_sids = azurite.pids  # each service its own process, in its own session
            sides = ("server", "server_http", "azurite", "bench_client")

            def cpu_now() -> tuple[float, ...]:
                # server: with its intake processes; server_http: the serving process alone
                return (session_cpu_s(server.pid), cpu_s(server.pid),
                        sum(map(session_cpu_s, azurite_sids)), time.process_time())  # fmt: skip

            machine = None
            if timeline:
                probe = Path(__file__).resolve().parent / "probes" / "machine_probe.py"
                machine = subprocess.Popen([
                    sys.executable, str(probe), str(timeline / "machine.jsonl"),
                    f"server={server.pid}", f"bench={os.getpid()}",
                    f"azurite={','.join(map(str, azurite_sids))}",
                ])  # fmt: skip
            cpu0, jiffies0 = cpu_now(), machine_jiffies()
            results = asyncio.run(
                send_stream(url, args.duration, args.rate, seed=args.seed, ids=bool(timeline))
            )
            cpu1, jiffies1 = cpu_now(), machine_jiffies()
            steal = (jiffies1[0] - jiffies0[0]) / max(jiffies1[1] - jiffies0[1], 1)
            if machine is not None and timeline:
                machine.terminate()
                machine.wait(timeout=10)
                with (timeline / "bench.jsonl").open("w") as out:
                    for s in results:
                        if s.rid:
                            out.write(json.dumps([s.rid, s.kind, s.status, *s.times]) + "\n")
            cpu = dict(zip(sides, cpu1, strict=True))
            cpu = {k: round(cpu[k] - c0, 2) for k, c0 in zip(cpu, cpu0, strict=True)}
            problems, notes = check_exactly_once(results)
            pushes = [s for s in results if s.kind != "health"]
            new_commits = {s.commit for s in pushes}
            job_ids = {s.body["job_id"] for s in pushes if s.status == 202}
            time.sleep(3)  # deliveries answered 503 at the deadline may still be finishing
            messages = [j for j in queued_job_ids(conn, queue) if j not in warm_ids]
            depth = len(messages)
            per_job = {j: messages.count(j) for j in job_ids}
            once = sum(1 for n in per_job.values() if n == 1)
            if once != len(job_ids):
                problems.append(f"{len(job_ids) - once} of {len(job_ids)} accepted jobs"
                                " are not on the queue exactly once")  # fmt: skip
            records = {j: c for j, c in job_records(conn).items() if j not in warm_records}
            per_commit: dict[str, int] = defaultdict(int)
            for commit in records.values():
                per_commit[commit] += 1
            doubled = [c for c, n in per_commit.items() if n > 1]
            if doubled:
                problems.append(f"{len(doubled)} commits have more than one job record")
            extra = depth - len(job_ids)
            if extra:
                notes.append(f"{extra} messages for jobs of deliveries answered 503")
            known = asyncio.run(jobs_exist(url, job_ids))
            if known != len(job_ids):
                problems.append(f"job API knows {known} of {len(job_ids)} queued jobs")
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()

    hook = summarize([s.latency_ms for s in pushes])
    shed = summarize([s.latency_ms for s in pushes if s.status == 503])
    errors: dict[str, int] = defaultdict(int)
    for s in pushes:
        if s.error:
            errors[s.error] += 1
    if errors:
        problems.append(f"transport errors: {dict(errors)}")
    late = sum(1 for s in pushes if s.latency_ms > 2500)
    statuses: dict[int, int] = defaultdict(int)
    for s in pushes:
        statuses[s.status] += 1
    health = summarize([s.latency_ms for s in results if s.kind == "health"])
    by_kind = {
        k: summarize([s.latency_ms for s in pushes if s.kind == k and s.status != 503])
        for k in ("new", "redelivery", "same-commit")
    }
    kinds = {k: sum(1 for s in pushes if s.kind == k) for k in ("new", "redelivery", "same-commit")}
    report = {
        "duration_s": args.duration,
        "rate_per_s": args.rate,
        "cores": os.cpu_count(),
        "deliveries": kinds,
        "distinct_commits": len(new_commits),
        "jobs": len(job_ids),
        "queue_messages": depth,
        "webhook": hook,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "shed_503": shed,
        "answers_over_2500_ms": late,
        "load_average": os.getloadavg(),
        "steal_share": round(steal, 4),
        "cpu_s": cpu,
        "cpu_ms_per_delivery": {k: round(v * 1000 / len(pushes), 2) for k, v in cpu.items()},
        "health": health,
        "answered_by_kind": by_kind,
        "ratio_p50": round(hook["p50_ms"] / health["p50_ms"], 2),
        "ratio_p99": round(hook["p99_ms"] / health["p99_ms"], 2),
        "exactly_once": not problems,
        "notes": notes,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "result.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(pushes)} deliveries in {args.duration:.0f}s at {args.rate:.0f}/s {kinds}")
    print(f"{'route':<10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in (("webhook", hook), ("health", health)):
        print(f"{name:<10} {row['n']:>6} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8}")
    print(f"webhook/health: p50 x{report['ratio_p50']}, p99 x{report['ratio_p99']}")
    print("answered (not 503), p50 / p99 ms: " + ", ".join(
        f"{k} {v['p50_ms']} / {v['p99_ms']}" for k, v in by_kind.items()))  # fmt: skip
    print(f"statuses {report['statuses']}; answers over 2.5 s: {late}; 503s: {shed}")
    print(f"load average (1, 5, 15 min) at the end: {report['load_average']};"
          f" steal during the stream {steal:.1%}")  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"CPU s during the stream {cpu}; ms per delivery {report['cpu_ms_per_delivery']}"
          f" (of {cores * args.duration:.0f} core-s on {cores} cores)")  # fmt: skip
    print(
        f"{len(new_commits)} distinct commits -> {len(job_ids)} jobs, {depth} queue messages:"
        f" {'exactly once' if not problems else 'PROBLEMS'}"
    )
    for p in (problems + notes)[:20]:
        print("  " + p, file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
