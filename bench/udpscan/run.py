#!/usr/bin/env python3
"""UDP scan under kernel-default ICMP rate limits: hostprint vs nmap, side by side in one run.

Lab `budp`: five hosts with every ICMP sysctl at its default (icmp_ratelimit 1000 ms per
destination after a burst of 6; icmp_msgs_per_sec 1000, icmp_msgs_burst 50 host-wide):
  web 198.18.0.10 nothing on UDP; db 198.18.0.20 nothing on UDP, TTL 128;
  fw 198.18.0.30 nft rejects UDP 137 with admin-prohibited and drops UDP 500;
  ns 198.18.0.53 dnsmasq on 53, a UDP echo on 161; silent 198.18.0.40 drops everything.
Each tool scans the top 20 UDP ports of all five at once (`-sU --top-ports 20 -Pn -n`), inside
the scanner namespace; wall time is the whole process. Two conditions:
  fresh  — every host's ICMP bucket full (7 s of quiet before the run);
  b2b    — right after another top-20 UDP scan of the same hosts (buckets empty), as the issue's
           "nmap run back to back with another scan".
Correct = every one of the 100 (host, port) states equals the truth. Not a test: nothing asserts.

Usage (root): python3 bench/udpscan/run.py [--reps 3] [--md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402
from hostprint.ports import top_ports  # noqa: E402

TOP20 = top_ports(20, "udp")
WEB, DB, FW, SILENT, NS = "198.18.0.10", "198.18.0.20", "198.18.0.30", "198.18.0.40", "198.18.0.53"
HOSTS = [WEB, DB, FW, SILENT, NS]
ECHO_161 = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',161))\n"
            "while True:\n d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n")
TRUTH = {
    WEB: {p: "closed" for p in TOP20},
    DB: {p: "closed" for p in TOP20},
    FW: {**{p: "closed" for p in TOP20}, 137: "filtered", 500: "open|filtered"},
    SILENT: {p: "open|filtered" for p in TOP20},
    NS: {**{p: "closed" for p in TOP20}, 53: "open", 161: "open"},
}


def spec() -> LabSpec:
    return LabSpec(name="budp", hosts=[
        HostSpec(name="web", address=WEB),
        HostSpec(name="db", address=DB, sysctls={"net.ipv4.ip_default_ttl": "128"}),
        HostSpec(name="fw", address=FW, firewall=["udp dport 137 reject with icmp type admin-prohibited",
                                                  "udp dport 500 drop"]),
        HostSpec(name="silent", address=SILENT, silent=True),
        HostSpec(name="ns", address=NS, services=["dns:53"]),
    ])


def nmap_states(xml: str) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for h in ET.fromstring(xml).iter("host"):
        addr = h.find("address").get("addr")
        ports = {int(p.get("portid")): p.find("state").get("state") for p in h.iter("port")}
        extra = [e.get("state") for e in h.iter("extraports")]
        out[addr] = {p: ports.get(p, extra[0] if extra else "?") for p in TOP20}
    return out


def hostprint_states(jsonl: str) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for line in jsonl.splitlines():
        h = json.loads(line)
        ports = {p["port"]: p["state"] for p in h["ports"]}
        extra = [e["state"] for e in h["extraports"]]
        out[h["address"]] = {p: ports.get(p, extra[0] if extra else "?") for p in TOP20}
    return out


def right(states: dict[str, dict[int, str]]) -> int:
    return sum(1 for a in HOSTS for p in TOP20 if states.get(a, {}).get(p) == TRUTH[a][p])


def run_tool(lab: Lab, tool: str) -> tuple[float, int]:
    if tool == "nmap":
        argv = ["nmap", "-sU", "--top-ports", "20", "-Pn", "-n", "-oX", "-", *HOSTS]
    else:
        argv = [sys.executable, "-m", "hostprint", "scan", "-sU", "--top-ports", "20", "-Pn", "-n", "-oJ", "-",
                "--no-db", "--progress", "never", *HOSTS]
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, timeout=900,
                 cwd=os.path.join(os.path.dirname(__file__), "..", ".."))
    el = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"{tool} failed: {r.stderr[-500:]}")
    st = nmap_states(r.stdout) if tool == "nmap" else hostprint_states(r.stdout)
    return el, right(st)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--md", action="store_true")
    a = ap.parse_args()
    res: dict[tuple[str, str], list[tuple[float, int]]] = {}
    with Lab(spec()) as lab:
        lab.spawn("ns", [sys.executable, "-c", ECHO_161], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for rep in range(a.reps):
            for tool in ("nmap", "hostprint") if rep % 2 == 0 else ("hostprint", "nmap"):
                time.sleep(7)  # every bucket refills (6 tokens at 1/s)
                res.setdefault((tool, "fresh"), []).append(run_tool(lab, tool))
                res.setdefault((tool, "b2b"), []).append(run_tool(lab, tool))  # buckets just emptied
                print(tool, rep, res[(tool, "fresh")][-1], res[(tool, "b2b")][-1], flush=True)
    n = len(HOSTS) * len(TOP20)
    nmap_med = {c: statistics.median(t for t, _ in res[("nmap", c)]) for c in ("fresh", "b2b")}
    print(f"\n{'condition':<8} {'tool':<10} {'median s':>9} {'min s':>7} {'/ nmap':>7}  states right (of {n}) per run")
    rows = []
    for c in ("fresh", "b2b"):
        for tool in ("nmap", "hostprint"):
            ts = [t for t, _ in res[(tool, c)]]
            ok = [k for _, k in res[(tool, c)]]
            med = statistics.median(ts)
            print(f"{c:<8} {tool:<10} {med:9.2f} {min(ts):7.2f} {med / nmap_med[c]:7.2f}  {ok}")
            rows.append(f"| {c} | {tool} | {med:.2f} | {min(ts):.2f} | {med / nmap_med[c]:.2f} | "
                        f"{', '.join(map(str, ok))} |")
    if a.md:
        print("\n| condition | tool | median s | min s | time / nmap's | states right of 100, per run |")
        print("|---|---|---:|---:|---:|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
