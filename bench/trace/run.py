#!/usr/bin/env python3
"""--packet-trace and -f cost: a 65,535-port -sS of one lab host, before/after a change, interleaved.

Why: the tracer sits on the engine's send and receive paths (engine/trace.py); when it is off it
must not slow the bulk scan. This runs `hostprint scan -sS -p- -n -Pn -T4` against one lab host
(five open ports, nft DROP on 1000-1099, as bench/portscan's scenario (a)) from each source tree
given, alternating trees run by run so machine load hits both alike, and reports the wall time
(interpreter start included). With --extra it also
times this tree with --packet-trace (lines to /dev/null) and with -f. States must equal the
first tree's; nothing asserts (machines are noisy).

Usage (root): python3 bench/trace/run.py [--reps 7] [--base /tmp/base-tree] [--extra]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402

A = "198.18.0.10"
OPEN = ["22", "80", "443", "3306", "31337"]


def states(jsonl: str) -> tuple:
    h = json.loads(jsonl.splitlines()[0])
    counts: dict[str, int] = {}
    for p in h["ports"]:
        counts[p["state"]] = counts.get(p["state"], 0) + 1
    for e in h["extraports"]:
        counts[e["state"]] = counts.get(e["state"], 0) + e["count"]
    return tuple(sorted(p["port"] for p in h["ports"] if p["state"] == "open")), tuple(sorted(counts.items()))


def one(lab: Lab, tree: str, extra: list[str]) -> tuple[float, tuple]:
    argv = [sys.executable, "-m", "hostprint", "scan", "-sS", "-p-", "-n", "-Pn", "-T4", *extra, A,
            "-oJ", "-", "--no-db", "--progress", "never"]
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, timeout=600, cwd=tree,
                 env={**os.environ, "PYTHONPATH": tree})
    wall = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"{tree}: rc {r.returncode}: {r.stderr[-500:]}")
    return wall, states(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--base", help="the source tree before the change (e.g. `git archive` of the merge base)")
    ap.add_argument("--extra", action="store_true", help="also --packet-trace to /dev/null and -f (this tree)")
    a = ap.parse_args()
    runs: list[tuple[str, str, list[str]]] = []
    if a.base:
        runs.append(("before (trace off)", a.base, []))
    runs.append(("after (trace off)", ROOT, []))
    if a.extra:
        runs.append(("after, -f", ROOT, ["-f"]))
    spec = LabSpec(name="trbench", hosts=[HostSpec(name="a", address=A, services=[f"tcp-listen:{p}" for p in OPEN],
                                                   firewall=["tcp dport 1000-1099 drop"])])
    walls: dict[str, list[float]] = {r[0]: [] for r in runs}
    ref = None
    agree: dict[str, int] = {r[0]: 0 for r in runs}
    with Lab(spec) as lab:
        for _ in range(a.reps):
            for name, tree, extra in runs:
                wall, st = one(lab, tree, extra)
                ref = ref or st
                walls[name].append(wall)
                agree[name] += st == ref
        trace_wall = None
        if a.extra:  # the tracer on: every one of ~131,000 frames is a line (to /dev/null)
            argv = [sys.executable, "-m", "hostprint", "scan", "-sS", "-p-", "-n", "-Pn", "-T4", "--packet-trace", A,
                    "--no-db", "--progress", "never"]
            t = time.monotonic()
            lab.exec(lab.scanner_ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900,
                     cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
            trace_wall = time.monotonic() - t
    print(f"# trace benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  load {os.getloadavg()[0]:.2f}  "
          f"cpus {os.cpu_count()}  reps {a.reps} (interleaved)")
    print("| run | median s | min s | max s | states equal the first run's |")
    print("|---|---:|---:|---:|---|")
    for name, _t, _e in runs:
        w = walls[name]
        print(f"| {name} | {statistics.median(w):.2f} | {min(w):.2f} | {max(w):.2f} | {agree[name]}/{a.reps} |")
    if trace_wall is not None:
        print(f"| after, --packet-trace to /dev/null (1 run) | {trace_wall:.2f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
