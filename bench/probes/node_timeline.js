// Preloaded into Azurite (NODE_OPTIONS="--require <this>") by bench_webhook.py --timeline:
// records every garbage collection (start, duration, kind) and the event loop's lag
// (a 10 ms timer, how late it fired) as JSON lines [monotonic ns, event, pid, detail]
// in $NODE_TIMELINE_OUT (each Azurite service, its own process, appends to it). process.hrtime is CLOCK_MONOTONIC, as Python's time.monotonic_ns.
"use strict";
const fs = require("fs");
const { PerformanceObserver, performance, constants } = require("perf_hooks");

const out = process.env.NODE_TIMELINE_OUT;
if (out) {
  const lines = [];
  const pid = String(process.pid);
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
    [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
  };
  const obs = new PerformanceObserver((list) => {
    const nowNs = process.hrtime.bigint();
    const nowMs = performance.now();
    for (const e of list.getEntries()) {
      const startNs = nowNs - BigInt(Math.round((nowMs - e.startTime) * 1e6));
      const kind = kinds[e.detail ? e.detail.kind : e.kind] || String(e.detail && e.detail.kind);
      lines.push(JSON.stringify([Number(startNs), "node_gc", pid, `${kind} ${Math.round(e.duration * 1e6)}`]));
    }
  });
  obs.observe({ entryTypes: ["gc"] });
  const tickNs = 10_000_000n;
  let before = process.hrtime.bigint();
  const tick = () => {
    const now = process.hrtime.bigint();
    const late = now - before - tickNs;
    lines.push(JSON.stringify([Number(before), "node_lag", pid, String(late > 0n ? late : 0n)]));
    before = now;
    setTimeout(tick, 10).unref();
  };
  setTimeout(tick, 10).unref();
  const flush = () => {
    if (lines.length) fs.appendFileSync(out, lines.splice(0).join("\n") + "\n");
  };
  setInterval(flush, 1000).unref();
  process.on("exit", flush);
  for (const sig of ["SIGTERM", "SIGINT"]) {
    process.prependListener(sig, flush);
  }
}
