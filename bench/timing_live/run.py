"""Wall time of `hostprint timing` against 1 vs 100 lab targets (issue 3: ratio must be <= 1.2).

One lab host owns 100 addresses (one kernel, one nginx), so every target has the same schedule and
the only difference between the runs is how many tests our event loop carries at once. Each run is
the real CLI in the scanner namespace; we report its wall time (process start to exit) and the
probe phase's own elapsed time from the JSON `scan` stats. Needs root. Usage:

    python3 bench/timing_live/run.py [--tests slf] [--repeat 3] [--retries 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402


def one(lab: Lab, addrs: list[str], tests: str, timeout: float) -> tuple[float, dict]:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "timing", *addrs, "-p", "80", "--tests", tests,
                                  "--cron-timeout", str(timeout), "-oJ", "-"], capture_output=True, text=True)
    wall = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    hosts = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    best = {}
    for h in hosts:
        m = h["os"]["timing"]["matches"]
        best[m[0]["id"] if m else None] = best.get(m[0]["id"] if m else None, 0) + 1
    return wall, {"hosts": len(hosts), "best": best}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", default="slf")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--retries", default="2", help="tcp_synack_retries of the lab host")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    extra = [f"198.18.1.{i}" for i in range(1, 100)]
    spec = LabSpec(name=f"tb{os.getpid() % 10000}", hosts=[
        HostSpec(name="many", address="198.18.0.30", extra_addresses=extra, services=["nginx:80"],
                 sysctls={"net.ipv4.tcp_synack_retries": a.retries, "net.ipv4.tcp_orphan_retries": "3"})])
    addrs = ["198.18.0.30", *extra]
    with Lab(spec) as lab:
        rows = {1: [], 100: []}
        for _ in range(a.repeat):
            for n in (1, 100):
                wall, info = one(lab, addrs[:n], a.tests, a.timeout)
                rows[n].append(wall)
                print(f"targets={n:3d} tests={a.tests} wall={wall:.2f}s {info}", flush=True)
        m1, m100 = statistics.median(rows[1]), statistics.median(rows[100])
        print(f"median wall: 1 target {m1:.2f} s, 100 targets {m100:.2f} s, ratio {m100 / m1:.3f}")


if __name__ == "__main__":
    main()
