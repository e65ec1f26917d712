"""Run by bench_webhook.py --timeline: how late a 5 ms sleep wakes on this machine (the
scheduler's stalls), and every 100 ms the CPU time of the machine (busy, iowait, steal) and
of the processes named on the command line, as JSON lines [monotonic ns, event, "", detail].

    python machine_probe.py OUT NAME=PID ...      (stops on SIGTERM)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

TICK_S, SAMPLE_S = 0.005, 0.1


def proc_cpu(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def machine() -> list[int]:
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = cpu[:8]
    return [user + nice + system + irq + softirq, idle, iowait, steal]


def tcp() -> dict[str, int]:
    """TCP counters of the machine: segments retransmitted, tail-loss probes, timeouts."""
    found: dict[str, int] = {}
    for name in ("/proc/net/snmp", "/proc/net/netstat"):
        with open(name) as f:
            rows = f.read().splitlines()
        for head, values in zip(rows[::2], rows[1::2], strict=True):
            keys, vals = head.split()[1:], values.split()[1:]
            found.update(zip(keys, map(int, vals), strict=True))
    return {k: found.get(k, 0) for k in ("RetransSegs", "TCPLossProbes", "TCPTimeouts")}


def all_cpu() -> dict[int, tuple[str, int]]:
    """Every process: (name, CPU jiffies so far)."""
    found: dict[int, tuple[str, int]] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    head, tail = f.read().rsplit(")", 1)
            except OSError:
                continue
            fields = tail.split()
            found[int(pid)] = (head.split("(", 1)[1], int(fields[11]) + int(fields[12]))
    return found


def disk_written() -> int:
    """Sectors written so far to the machine's whole disks (not partitions, loops, rams)."""
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            name = fields[2]
            if name.startswith(("loop", "ram", "dm-")) or name[-1].isdigit():
                continue
            total += int(fields[9])
    return total


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


def main() -> None:
    # side=PID[,PID...]: a side may be several processes (Azurite: one per service)
    pids = {k: [int(x) for x in v.split(",")] for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    lines: list[str] = []
    last_sample = time.monotonic_ns()
    prev = (machine(), {k: sum(map(proc_cpu, p)) for k, p in pids.items()})
    prev_tcp = tcp()
    first = all_cpu()
    kworkers = [p for p, (name, _) in first.items() if name.startswith("kworker")]
    prev_kw, prev_disk = sum(proc_cpu(p) for p in kworkers), disk_written()
    while running:
        before = time.monotonic_ns()
        time.sleep(TICK_S)
        now = time.monotonic_ns()
        late = now - before - int(TICK_S * 1e9)
        if late > 2_000_000:
            lines.append(json.dumps([before, "sleep_lag", "", str(late)]))
        if now - last_sample >= SAMPLE_S * 1e9:
            cur = (machine(), {k: sum(map(proc_cpu, p)) for k, p in pids.items()})
            d = [c - p for c, p in zip(cur[0], prev[0], strict=True)]
            per = {k: cur[1][k] - prev[1][k] for k in pids}
            kw, disk = sum(proc_cpu(p) for p in kworkers), disk_written()
            per["kworkers"], per["disk_sectors"] = kw - prev_kw, disk - prev_disk
            prev_kw, prev_disk = kw, disk
            detail = " ".join(map(str, d)) + " " + " ".join(f"{k}={v}" for k, v in per.items())
            lines.append(json.dumps([last_sample, "cpu", "", detail]))
            cur_tcp = tcp()
            if cur_tcp != prev_tcp:
                delta = " ".join(f"{k}={cur_tcp[k] - prev_tcp[k]}" for k in cur_tcp)
                lines.append(json.dumps([last_sample, "tcp", "", delta]))
            prev_tcp = cur_tcp
            prev, last_sample = cur, now
    # Who else used the CPU meanwhile (the processes alive at the end, by CPU used).
    last = all_cpu()
    used = sorted(((c - first.get(p, (n, 0))[1], p, n) for p, (n, c) in last.items()),
                  reverse=True)  # fmt: skip
    mine = {p for side in pids.values() for p in side} | {os.getpid()}
    for ticks, pid, name in used[:8]:
        if ticks > 0:
            who = "ours" if pid in mine else cmdline(pid)
            row = [time.monotonic_ns(), "top", str(pid), f"{ticks} {name} {who}"]
            lines.append(json.dumps(row))
    with open(sys.argv[1], "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    os.nice(0)
    main()
