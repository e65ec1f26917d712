"""Where the slow webhook answers spent their time: reads a `bench_webhook.py --timeline DIR`.

    .venv/bin/python bench/timeline_report.py DIR [--slow-ms 100]

For every delivery answered after more than ``--slow-ms`` (counted from when it was due),
its time is cut into segments on one clock (CLOCK_MONOTONIC, all processes):

  generator   due -> the load generator started sending it (its own lag)
  to_handler  sent -> the server's handler started (connect, the server's loop, HTTP parsing)
  body        handler -> body read and hashed
  pool_wait   body -> an intake thread started it
  storage     the intake's storage calls (sum), and intake_cpu: the rest of the intake
  to_answer   intake end -> the handler answered (the loop picking up the result)
  to_client   answer -> the generator read it

and each slow delivery is checked against what happened meanwhile: this server's garbage
collections (``gc.callbacks``), its event loop's lag, Azurite's garbage collections and
event-loop lag (Node), the machine's scheduler stalls (a 5 ms sleep waking late) and its
CPU (busy share of all cores, steal). A cause "explains" a delivery when it overlaps at
least half of that delivery's excess over the median answer (or 10 ms, if less).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

Interval = tuple[int, int]


def load(path: Path) -> list[list]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def overlap(intervals: list[Interval], lo: int, hi: int) -> int:
    """Nanoseconds of [lo, hi] covered by ``intervals`` (which may overlap each other)."""
    cut = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, end = 0, lo
    for a, b in cut:
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total


def lag_intervals(events: list[list], name: str, tick_ns: int, floor_ns: int) -> list[Interval]:
    """A loop that woke ``lag`` late after a ``tick`` sleep from ``t`` was blocked for
    about [t + tick, t + tick + lag]."""
    return [
        (t + tick_ns, t + tick_ns + int(d))
        for t, ev, _, d in events
        if ev == name and int(d) >= floor_ns
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    ap.add_argument("--slow-ms", type=float, default=100.0)
    args = ap.parse_args()
    total: dict[str, int] = defaultdict(int)
    for d in args.dirs:
        print(f"=== {d}")
        counts = report(d, args.slow_ms)
        if counts is None:
            return 2
        for k, v in counts.items():
            total[k] += v
        print()
    if len(args.dirs) > 1 and total["slow"]:
        n = total.pop("slow")
        print(f"=== all {len(args.dirs)} runs: {n} deliveries over {args.slow_ms:.0f} ms")
        for k, v in sorted(total.items()):
            print(f"  {k:<34} {v:>5} ({v / n:.0%})")
    return 0


def report(d: Path, slow_ms: float) -> dict[str, int] | None:
    """Print the report of one timeline; the counts of slow deliveries per cause."""
    bench, server = load(d / "bench.jsonl"), load(d / "server.jsonl")
    node, machine = load(d / "node.jsonl"), load(d / "machine.jsonl")
    if not bench:
        print("no bench.jsonl: run bench_webhook.py --timeline DIR first")
        return None
    t0 = min(r[3] for r in bench)
    t1 = max(r[5] for r in bench)

    # --- the server's per-request marks
    marks: dict[str, dict[str, int]] = defaultdict(dict)
    calls: dict[str, list[Interval]] = defaultdict(list)
    call_names: dict[str, list[str]] = defaultdict(list)
    open_calls: dict[tuple[str, str], int] = {}
    gc_ours: list[tuple[int, int, str]] = []
    gc_open: int | None = None
    for t, ev, rid, detail in server:
        if ev == "gc_start":
            gc_open = t
        elif ev == "gc_stop" and gc_open is not None:
            gc_ours.append((gc_open, t, detail))
            gc_open = None
        elif ev == "call_start":
            open_calls[(rid, detail)] = t
        elif ev == "call_end" and (rid, detail) in open_calls:
            calls[rid].append((open_calls.pop((rid, detail)), t))
            call_names[rid].append(detail)
        elif rid:
            marks[rid].setdefault(ev, t)
    loop_ours = lag_intervals(server, "loop_lag", 10_000_000, 5_000_000)
    gc_node = [(t, t + int(x.split()[1]), x.split()[0]) for t, ev, _, x in node if ev == "node_gc"]
    loop_node = lag_intervals(node, "node_lag", 10_000_000, 5_000_000)
    stalls = [
        (t + 5_000_000, t + 5_000_000 + int(x))
        for t, ev, _, x in machine
        if ev == "sleep_lag" and int(x) >= 5_000_000
    ]
    cpu = [(t, [int(v) for v in x.split()[:4]]) for t, ev, _, x in machine if ev == "cpu"]
    per_side = [
        (t, dict(kv.split("=") for kv in x.split()[4:])) for t, ev, _, x in machine if ev == "cpu"
    ]
    # Both cores busy (or taken by the hypervisor: steal) for a 100 ms sample.
    saturated = [
        (t, t + 100_000_000)
        for t, (busy, idle, io, steal) in cpu
        if busy + idle + io + steal and (busy + steal) / (busy + idle + io + steal) >= 0.95
    ]
    # The hypervisor took 10% or more of the machine (other guests) in a 100 ms sample.
    stolen = [
        (t, t + 100_000_000)
        for t, (busy, idle, io, steal) in cpu
        if busy + idle + io + steal and steal / (busy + idle + io + steal) >= 0.10
    ]

    pushes = [r for r in bench if r[1] != "health"]
    lat = {r[0]: (r[5] - r[3]) / 1e6 for r in bench}
    median = statistics.median(lat[r[0]] for r in pushes)
    slow = [r for r in pushes if lat[r[0]] > slow_ms]
    print(f"{len(pushes)} deliveries, median {median:.1f} ms; {len(slow)} over {slow_ms:.0f} ms")
    health = [r for r in bench if r[1] == "health"]
    slow_health = [r for r in health if lat[r[0]] > slow_ms]
    print(f"{len(health)} health checks; {len(slow_health)} over {slow_ms:.0f} ms")

    window = (t1 - t0) / 1e9
    gc2 = [g for g in gc_ours if g[2] == "2"]
    print(f"\nduring the stream ({window:.1f} s):")
    for name, items in (
        ("server gc gen0/1", [g for g in gc_ours if g[2] != "2"]),
        ("server gc gen2", gc2),
        ("node gc minor", [g for g in gc_node if g[2] == "minor"]),
        ("node gc major/incr.", [g for g in gc_node if g[2] != "minor"]),
    ):
        inside = [(b - a) / 1e6 for a, b, _ in items if t0 <= a <= t1]
        if inside:
            print(
                f"  {name:<22} {len(inside):>5} pauses, total {sum(inside):8.1f} ms,"
                f" max {max(inside):6.1f} ms"
            )
    for name, items in (
        ("server loop blocked", loop_ours),
        ("node loop blocked", loop_node),
        ("machine stalls", stalls),
        ("cpu >= 95% busy/stolen", saturated),
        ("steal >= 10%", stolen),
    ):
        inside = [(b - a) / 1e6 for a, b in items if t0 <= a <= t1]
        if inside:
            print(
                f"  {name:<22} {len(inside):>5} spans >= 5 ms, total {sum(inside):8.1f} ms,"
                f" max {max(inside):6.1f} ms"
            )
    inside_cpu = [i for i, (t, _) in enumerate(cpu) if t0 <= t <= t1]
    allj = sum(sum(cpu[i][1]) for i in inside_cpu)
    if allj:
        share = {
            k: sum(int(per_side[i][1].get(k, 0)) for i in inside_cpu) / allj
            for k in ("server", "azurite", "bench", "kworkers")
        }
        written = sum(int(per_side[i][1].get("disk_sectors", 0)) for i in inside_cpu) / 2048
        busy = sum(cpu[i][1][0] for i in inside_cpu) / allj
        steal = sum(cpu[i][1][3] for i in inside_cpu) / allj
        print(
            f"  machine (share of all cores): busy {busy:.0%} = server {share['server']:.0%}"
            f" + azurite {share['azurite']:.0%} + generator {share['bench']:.0%}"
            f" + kernel workers {share['kworkers']:.0%}"
            f" + everything else {busy - sum(share.values()):.0%}; steal {steal:.1%}"
        )
        print(f"  disk: {written:.0f} MB written during the stream")
    tcp = [(t, dict(kv.split("=") for kv in x.split())) for t, ev, _, x in machine if ev == "tcp"]
    tcp_in = [c for t, c in tcp if t0 <= t <= t1]
    if tcp_in:
        sums = {k: sum(int(c.get(k, 0)) for c in tcp_in) for k in tcp_in[0]}
        print(f"  TCP (whole machine): {sums}")
    for _, _, pid, x in (e for e in machine if e[1] == "top"):
        print(f"  CPU during the stream, pid {pid}: {x}")
    retries = [(ev, x) for t, ev, _, x in server if ev in ("retry", "stale") and t0 <= t <= t1]
    opened = sum(1 for t, ev, _, _ in server if ev == "connect" and t0 <= t <= t1)
    dropped = sum(1 for t, ev, _, _ in server if ev == "discard" and t0 <= t <= t1)
    print(f"  storage connections opened {opened}, closed because the pool was full {dropped}")
    print(
        f"  storage retries {sum(1 for e, _ in retries if e == 'retry')},"
        f" stale keep-alive connections {sum(1 for e, _ in retries if e == 'stale')}"
    )

    segments = (
        "generator",
        "to_handler",
        "body",
        "pool_wait",
        "storage",
        "intake_cpu",
        "to_answer",
        "to_client",
    )
    causes: dict[str, list[Interval]] = {
        "server gc": [(a, b) for a, b, _ in gc_ours],
        "server loop blocked": loop_ours,
        "node gc": [(a, b) for a, b, _ in gc_node],
        "node loop blocked": loop_node,
        "machine stall": stalls,
        "cpu saturated": saturated,
        "steal >= 10%": stolen,
    }
    retried = {rid for _, ev, rid, _ in server if ev == "retry" and rid}
    dominant: dict[str, int] = defaultdict(int)
    explained: dict[str, int] = defaultdict(int)
    unexplained = 0
    seg_sum: dict[str, list[float]] = defaultdict(list)
    for r in slow:
        rid, _, _, due, sent, done = r
        m = marks.get(rid, {})
        cs = calls.get(rid, [])
        store = sum(b - a for a, b in cs)
        seg = {"generator": sent - due}
        if "handler" in m:
            seg["to_handler"] = m["handler"] - sent
            if "body" in m:
                seg["body"] = m["body"] - m["handler"]
                if "intake_start" in m:
                    seg["pool_wait"] = m["intake_start"] - m["body"]
                    if "intake_end" in m:
                        seg["storage"] = store
                        seg["intake_cpu"] = m["intake_end"] - m["intake_start"] - store
                        if "answer" in m:
                            seg["to_answer"] = m["answer"] - m["intake_end"]
            if "answer" in m:
                seg["to_client"] = done - m["answer"]
        for k, v in seg.items():
            seg_sum[k].append(v / 1e6)
        dominant[max(seg, key=lambda k: seg[k])] += 1
        excess = (done - due) - min(median, 10.0) * 1e6  # a stalled run has a high median
        hit = False
        for name, iv in causes.items():
            if overlap(iv, due, done) >= 0.5 * excess:
                explained[name] += 1
                hit = True
        if rid in retried:  # a storage call waited out a back-off (0.2 s at first)
            explained["storage retry"] += 1
            hit = True
        unexplained += not hit
    if slow:
        print(
            "\nthe slowest (ms; calls; Azurite and server CPU, steal, as shares of a core"
            " in the 100 ms samples overlapping it; node gc / node loop blocked overlap)"
        )
        for r in sorted(slow, key=lambda r: -lat[r[0]])[:12]:
            rid, kind, status, due, sent, done = r
            cs = ", ".join(
                f"{n} {(b - a) / 1e6:.0f}"
                for n, (a, b) in zip(call_names[rid], calls[rid], strict=True)
            )
            near = [i for i, (t, _) in enumerate(cpu) if t + 100_000_000 > due and t < done]
            az = [int(per_side[i][1].get("azurite", 0)) for i in near]
            sv = [int(per_side[i][1].get("server", 0)) for i in near]
            st = [cpu[i][1][3] for i in near]
            k = max(len(near), 1) * 10  # jiffies per 100 ms sample and core
            ng = overlap(causes["node gc"], due, done) / 1e6
            nl = overlap(causes["node loop blocked"], due, done) / 1e6
            rt = sum(int(c.get("RetransSegs", 0)) for t, c in tcp if due - 100_000_000 < t < done)
            print(
                f"  {rid:>6} {kind:<11} {status} {lat[rid]:6.0f}: [{cs}]"
                f" az {sum(az) / k:.2f} srv {sum(sv) / k:.2f} steal {sum(st) / k:.2f};"
                f" node gc {ng:.0f}, node blocked {nl:.0f}; TCP retransmits {rt}"
            )
        n = len(slow)
        print(f"\nthe {n} slow deliveries: segments (ms, median / max over them)")
        for k in segments:
            v = seg_sum.get(k)
            if v:
                top = dominant.get(k, 0)
                print(
                    f"  {k:<12} {statistics.median(v):8.1f} / {max(v):8.1f}"
                    f"   the largest segment of {top:>4} ({top / n:.0%})"
                )
        print("causes overlapping at least half of a slow delivery's excess (not exclusive):")
        for name in [*causes, "storage retry"]:
            print(f"  {name:<22} {explained.get(name, 0):>5} ({explained.get(name, 0) / n:.0%})")
        print(f"  {'none of them':<22} {unexplained:>5} ({unexplained / n:.0%})")
    counts = {"slow": len(slow)}
    counts.update({f"largest segment: {k}": v for k, v in dominant.items()})
    counts.update({f"explained by {k}": v for k, v in explained.items()})
    counts["explained by none"] = unexplained
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
