#!/usr/bin/env python3
"""Idle scan of 1,000 ports: hostprint -sI vs nmap -sI, side by side in one lab, with and without
background traffic on the zombie.

Lab (hostprint/lab/idle.py): lwIP zombie 198.18.0.51 (one global IP ID counter), target
198.18.0.60 with 5 open ports among the 1,000 scanned (22, 80, 443, 3306, 8080), the others
closed or dropped (1000-1010). Background: host `noise` sends the zombie R UDP datagrams per
second to a closed port, each answered with an ICMP port unreachable (one IP ID). Each tool runs
`-sI 198.18.0.51 -Pn -n -p 1-998,3306,8080 198.18.0.60` inside the scanner namespace; wall time
is the whole process. Correct = every port's state equals the truth (open / closed|filtered).
Packets: hostprint's zombie readings and spoofed SYNs (its stderr notes), nmap's "Raw packets
sent" (-v). Not a test: nothing asserts.

Usage (root): python3 bench/idlescan/run.py [--reps 3] [--rates 0,10,30,60] [--md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

from hostprint.lab import Lab, idle  # noqa: E402

PORTS = list(range(1, 999)) + [3306, 8080]
SPEC = "1-998,3306,8080"


def wrong(states: dict[int, str]) -> int:
    t = idle.truth(PORTS)
    return sum(states.get(p) != s for p, s in t.items())


def run_hostprint(lab: Lab) -> dict:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "scan", "-sI", idle.ZOMBIE, "-Pn", "-n", "-p", SPEC,
                                  idle.TARGET, "-oJ", "-", "--no-db", "--progress", "never"],
                 capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=1800)
    el = time.monotonic() - t
    if r.returncode != 0:
        return {"time": el, "error": r.stderr.strip().splitlines()[-1]}
    h = json.loads(r.stdout.splitlines()[0])
    listed = {p["port"]: p["state"] for p in h["ports"]}
    rest = h["extraports"][0]["state"] if h["extraports"] else None
    states = {p: listed.get(p, rest) for p in PORTS}
    m = re.search(r"(\d+) ports in (\d+) zombie readings and (\d+) spoofed SYNs", r.stderr)
    readings, spoofed = (int(m[2]), int(m[3])) if m else (None, None)
    return {"time": el, "wrong": wrong(states), "readings": readings, "packets": (readings or 0) + (spoofed or 0)}


def run_nmap(lab: Lab) -> dict:
    t = time.monotonic()
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        r = lab.exec(lab.scanner_ns, ["nmap", "-sI", idle.ZOMBIE, "-Pn", "-n", "-v", "-p", SPEC, idle.TARGET, "-oX", f.name],
                     capture_output=True, text=True, timeout=3600)
        el = time.monotonic() - t
        if r.returncode != 0 or "QUITTING" in r.stdout + r.stderr:
            return {"time": el, "error": (r.stdout + r.stderr).strip().splitlines()[-1]}
        host = ET.parse(f.name).getroot().find("host")
    listed = {int(p.get("portid")): p.find("state").get("state") for p in host.iter("port")}
    rest = next((e.get("state") for e in host.iter("extraports")), None)
    states = {p: listed.get(p, rest) for p in PORTS}
    m = re.search(r"Raw packets sent: (\d+)", r.stdout)
    return {"time": el, "wrong": wrong(states), "packets": int(m[1]) if m else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rates", default="0,10,30,60")
    ap.add_argument("--nmap-reps", type=int, default=None, help="nmap runs per rate (default --reps)")
    ap.add_argument("--md", action="store_true")
    a = ap.parse_args()
    rates = [float(x) for x in a.rates.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpb-idle-") as tmp, Lab(idle.idle_spec("bidle")) as lab:
        if idle.start_zombie(lab, tmp) is None:
            print("needs Debian liblwip-dev and a C compiler", file=sys.stderr)
            return 1
        for rate in rates:
            bg = idle.start_background(lab, rate) if rate > 0 else None
            try:
                time.sleep(1.0)
                hp = [run_hostprint(lab) for _ in range(a.reps)]
                nm = [run_nmap(lab) for _ in range(a.nmap_reps if a.nmap_reps is not None else a.reps)]
            finally:
                if bg is not None:
                    idle.stop_background(bg)
            rows.append((rate, hp, nm))
            print(json.dumps({"rate": rate, "hostprint": hp, "nmap": nm}), file=sys.stderr, flush=True)

    def cell(rs: list[dict], key: str) -> str:
        vals = [r[key] for r in rs if r.get(key) is not None]
        if not vals:
            return "; ".join(sorted({r.get("error", "-") for r in rs}))[:80]
        return f"{statistics.median(vals):.1f}" if key == "time" else "/".join(str(v) for v in vals)

    lines = ["| background (IDs/s) | hostprint time (s, median) | hostprint wrong ports per run | hostprint readings | "
             "hostprint packets | nmap time (s, median) | nmap wrong ports per run | nmap packets |",
             "|---|---|---|---|---|---|---|---|"]
    for rate, hp, nm in rows:
        lines.append(f"| {rate:g} | {cell(hp, 'time')} | {cell(hp, 'wrong')} | {cell(hp, 'readings')} | "
                     f"{cell(hp, 'packets')} | {cell(nm, 'time')} | {cell(nm, 'wrong')} | {cell(nm, 'packets')} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
