#!/usr/bin/env python3
"""Cluster benchmark (issue 21): `hostprint cluster scan` with 3 Dask workers vs 1, and the
one-machine `hostprint scan`, on 192 addresses x all 65,535 TCP ports (-sS -n -Pn -T4).

Lab `bclu`: one target kernel carrying 192 addresses (five open ports each), a namespace for the
Dask scheduler and one per worker ("machine"), each on the lab's bridge; the client runs in the
scanner namespace. All namespaces share this machine's CPUs, so besides the wall times it reports
each worker's CPU time (user + system of its shards' hostprint processes, from wait4) and a
projection for N real machines from the measured per-shard cost and the scheduler's overhead per
task. Port states of every run are compared with the one-machine scan. Not a test: nothing asserts.

Usage (root): python3 bench/cluster/run.py [--shards 12] [--reps 1] [--md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402
from hostprint.lab.daskcluster import WORKERS, DaskCluster, machine_hosts  # noqa: E402

OPEN = ["22", "80", "443", "3306", "31337"]
ADDRS = [f"198.18.1.{i}" for i in range(1, 193)]
FLAGS = ["-sS", "-n", "-Pn", "-T4", "-p-"]


def spec(name: str) -> LabSpec:
    return LabSpec(name=name, hosts=[
        HostSpec(name="t", address=ADDRS[0], extra_addresses=ADDRS[1:], services=[f"tcp-listen:{p}" for p in OPEN]),
        *machine_hosts(),
    ])


def states(text: str) -> dict[str, tuple]:
    out = {}
    for line in text.splitlines():
        d = json.loads(line)
        counts: dict[str, int] = {}
        for p in d["ports"]:
            counts[p["state"]] = counts.get(p["state"], 0) + 1
        for e in d["extraports"]:
            counts[e["state"]] = counts.get(e["state"], 0) + e["count"]
        out[d["address"]] = (frozenset(p["port"] for p in d["ports"] if p["state"] == "open"),
                             tuple(sorted(counts.items())))
    return out


def one_machine(lab: Lab, tmp: str) -> tuple[float, dict, float]:
    out = os.path.join(tmp, "one.jsonl")
    t = time.monotonic()
    r = lab.exec("scan", ["/usr/bin/env", "time", "-f", "%U %S", sys.executable, "-m", "hostprint", "scan", *FLAGS,
                          *ADDRS, "-oJ", out, "--no-db", "--progress", "never"],
                 capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    wall = time.monotonic() - t
    assert r.returncode == 0, r.stderr[-2000:]
    u, s = r.stderr.strip().splitlines()[-1].split()
    return wall, states(open(out).read()), float(u) + float(s)


def cluster(lab: Lab, dask: DaskCluster, tmp: str, shards: int, tag: str) -> tuple[float, dict, dict]:
    out, db = os.path.join(tmp, f"{tag}.jsonl"), os.path.join(tmp, f"{tag}.sqlite")
    t = time.monotonic()
    r = lab.exec("scan", [sys.executable, "-m", "hostprint", "cluster", "scan", "--scheduler", dask.address,
                          "--shards", str(shards), "--seed", "21", "-q", "-oJ", out, "--db", db, *FLAGS, *ADDRS],
                 capture_output=True, text=True, env=dask.env)
    wall = time.monotonic() - t
    assert r.returncode == 0, r.stderr[-2000:]
    con = sqlite3.connect(db)
    stats = json.loads(con.execute("SELECT stats FROM runs").fetchone()[0])
    con.close()
    return wall, states(open(out).read()), stats["cluster"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--md", action="store_true")
    a = ap.parse_args()
    rows = []
    with Lab(spec(f"bclu{os.getpid() % 10000}")) as lab, tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        ref_walls, ref_cpu = [], []
        ref = None
        for _ in range(a.reps):
            w, ref, cpu = one_machine(lab, tmp)
            ref_walls.append(w)
            ref_cpu.append(cpu)
        rows.append(("one machine: hostprint scan", statistics.median(ref_walls), statistics.median(ref_cpu), "-",
                     "reference"))
        results = {}
        for n in (1, 3):
            with DaskCluster(lab, list(WORKERS)[:n], ROOT) as dask:
                overhead = dask.overhead_per_task()
                walls, last = [], None
                for _ in range(a.reps):
                    w, got, st = cluster(lab, dask, tmp, a.shards, f"c{n}")
                    walls.append(w)
                    last = st
                    same = got == ref
                assert last is not None
                per_worker = {k.split("//")[1].split(":")[0]: v for k, v in last["per_worker"].items()}
                cpu = sum(v["cpu_s"] for v in per_worker.values())
                results[n] = (statistics.median(walls), last, overhead)
                rows.append((f"cluster, {n} worker(s), {a.shards} shards", statistics.median(walls), cpu,
                             ", ".join(f"{k}: {v['shards']} shards {v['cpu_s']:.1f} s CPU"
                                       for k, v in sorted(per_worker.items())),
                             "equal" if same else "DIFFERENT"))
    wall1, st1, overhead = results[1]
    shard_walls = [s["wall_s"] for s in st1["per_shard"]]
    shard_cpu = [s["cpu_s"] for s in st1["per_shard"]]
    fixed = wall1 - sum(shard_walls)  # client start, connecting, inventory, merging: paid once
    print(f"{'run':40} {'wall s':>8} {'CPU s':>8}  per worker / states")
    for name, wall, cpu, per, same in rows:
        print(f"{name:40} {wall:8.2f} {cpu:8.2f}  {per}  [{same}]")
    print(f"\nspeed-up 3 workers vs 1: {results[1][0] / results[3][0]:.2f}x (same 2 CPUs shared by all namespaces)")
    print(f"per shard (1 worker): wall {statistics.mean(shard_walls):.2f} s, CPU {statistics.mean(shard_cpu):.2f} s; "
          f"scheduler overhead per task {overhead * 1000:.2f} ms; fixed cost {fixed:.2f} s")
    print("projection for N machines, each with its own CPUs (T = fixed + ceil(S/N) x shard wall + S x overhead):")
    proj = []
    for n in (1, 3, 6, 12):
        t = fixed + math.ceil(a.shards / n) * statistics.mean(shard_walls) + a.shards * overhead
        proj.append((n, t))
        print(f"  N={n:2}: {t:6.2f} s  ({wall1 / t:.2f}x)")
    if a.md:
        print("\n| run | wall s | CPU s (all shards) | per worker | port states vs one machine |")
        print("|---|---:|---:|---|---|")
        for name, wall, cpu, per, same in rows:
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {per} | {same} |")
        print("\n| N machines | projected s | speed-up vs 1 worker |")
        print("|---:|---:|---:|")
        for n, t in proj:
            print(f"| {n} | {t:.2f} | {wall1 / t:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
