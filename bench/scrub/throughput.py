"""Throughput of `hostprint scrub` on the scrub lab (issue 19): what each stage costs.

    sudo python3 bench/scrub/throughput.py [--conns 3000] [--ports 1-65535] [--repeat 3]

Modes: no scrubber; nft only (--no-queue --no-synproxy); nft + SYNPROXY (--no-queue); nft + NFQUEUE
(--no-synproxy); everything (the default). Two loads from the scanner namespace through the router:
  syn  one `hostprint scan -sS -p PORTS` of lx2 (65,535 SYNs; the answers are RSTs from lx2, or
       SYN-ACKs from SYNPROXY): packets per second both ways and how many ports were answered;
  conn TCP connections to nginx on lx1 (connect, send a HEAD request, read the answer, close), 64 at
       a time: connections per second (every SYN and SYN-ACK passes the queue).
Results: bench/RESULTS.md "Scrubber throughput".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hostprint.lab import scrublab as S  # noqa: E402

MODES = {"none": None, "nft only": ["--no-queue", "--no-synproxy"], "nft + SYNPROXY": ["--no-queue"],
         "nft + NFQUEUE": ["--no-synproxy"], "nft + NFQUEUE + SYNPROXY": []}

def syn_load(sl: S.ScrubLab, ports: str) -> tuple[float, int]:
    t = time.monotonic()
    r = sl.scan([sys.executable, "-m", "hostprint.cli", "scan", "-sS", "-Pn", "-n", "-p", ports, "--no-db", "--progress",
                 "never", "-oJ", "-", S.HOSTS["lx2"][0]], timeout=600)
    dt = time.monotonic() - t
    answered = 0
    for ln in r.stdout.splitlines():
        if ln.startswith("{"):
            h = json.loads(ln)
            answered += sum(1 for p in h.get("ports", []) if p["state"] in ("open", "closed"))
            answered += sum(e["count"] for e in h.get("extraports", []) if e["state"] in ("open", "closed"))
    return dt, answered


def conn_load(sl: S.ScrubLab, n: int) -> tuple[int, int, float]:
    return S.connection_burst(sl, S.HOSTS["lx1"][0], n, 64)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--ports", default="1-65535")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    nports = sum(int(b) - int(x) + 1 for x, _, b in (p.partition("-") for p in a.ports.split(",")))
    with S.scrub_lab(f"st{os.getpid() % 10000}") as sl:
        print(f"| mode | SYN scan of {nports} ports: s (median of {a.repeat}) | answered | SYN pps | "
              f"connections/s (median, {a.conns} x HEAD, 64 at a time) | failed |")
        print("|---|---|---|---|---|---|")
        for mode, extra in MODES.items():
            if extra is not None:
                sl.start_scrubber(*extra)
            syn = [syn_load(sl, a.ports) for _ in range(a.repeat)]
            conn = [conn_load(sl, a.conns) for _ in range(a.repeat)]
            stats = sl.stop_scrubber().strip() if extra is not None else ""
            sdt = statistics.median(d for d, _ in syn)
            cps = statistics.median(ok / dt for ok, _, dt in conn)
            print(f"| {mode} | {sdt:.2f} | {min(n for _, n in syn)}-{max(n for _, n in syn)} | {nports / sdt:,.0f} | "
                  f"{cps:,.0f} | {sum(f for _, f, _ in conn)} |", flush=True)
            if stats:
                print(f"<!-- {mode}: {stats} -->", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
