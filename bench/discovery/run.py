#!/usr/bin/env python3
"""Discovery benchmark: hostprint discover vs nmap -sn on a routed /24 of lab hosts that answer
different probe kinds, side by side in one run.

The /24 (198.19.0.0/24) sits behind the lab's router, so ARP cannot shortcut discovery; one kernel
carries 210 addresses whose nft rules make four groups:
  .10-.69    answer everything
  .70-.129   drop ICMP echo requests (found by timestamp or TCP)
  .130-.189  drop all ICMP (found by TCP only)
  .190-.219  drop TCP and incoming ICMP (found only by the UDP sweep's port unreachable)
The other 46 addresses have no host. Prints time, hosts found per group, and ratios to nmap.
Usage (root): python3 bench/discovery/run.py [--reps 3] [--md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402

GROUPS = {"all kinds": range(10, 70), "no echo": range(70, 130), "no ICMP": range(130, 190), "UDP only": range(190, 220)}


def spec() -> LabSpec:
    addrs = [f"198.19.0.{i}" for i in range(10, 220)]
    return LabSpec(name="bdisc", hosts=[
        HostSpec(name="gw", address="198.18.0.2", router=True),
        HostSpec(name="many", address=addrs[0], extra_addresses=addrs[1:], segment=2,
                 sysctls={"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_msgs_per_sec": "100000"},
                 firewall=["ip daddr 198.19.0.70-198.19.0.129 icmp type echo-request drop",
                           "ip daddr 198.19.0.130-198.19.0.189 meta l4proto icmp drop",
                           "ip daddr 198.19.0.190-198.19.0.219 meta l4proto { tcp, icmp } drop"]),
    ])


def found_by_group(up: set[str]) -> dict[str, int]:
    return {g: sum(1 for i in r if f"198.19.0.{i}" in up) for g, r in GROUPS.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--md", action="store_true")
    args = ap.parse_args()
    times: dict[str, list[float]] = {"nmap -sn": [], "hostprint discover": []}
    found: dict[str, dict[str, int]] = {}
    with Lab(spec()) as lab:
        for _ in range(args.reps):
            t = time.monotonic()
            r = lab.exec(lab.scanner_ns, ["nmap", "-sn", "-n", "-oX", "-", "198.19.0.0/24"], capture_output=True, text=True)
            times["nmap -sn"].append(time.monotonic() - t)
            up = {h.find("address").get("addr") for h in ET.fromstring(r.stdout).iter("host")
                  if h.find("status").get("state") == "up"}
            found["nmap -sn"] = found_by_group(up)
            t = time.monotonic()
            r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "discover", "-n", "198.19.0.0/24", "-oJ", "-",
                                          "--no-db", "--progress", "never"], capture_output=True, text=True)
            times["hostprint discover"].append(time.monotonic() - t)
            up = {d["address"] for d in map(json.loads, r.stdout.splitlines()) if d["status"] == "up"}
            found["hostprint discover"] = found_by_group(up)
            found["hostprint discover"]["false positives"] = len(up - {f"198.19.0.{i}" for i in range(10, 220)} - {"198.19.0.1"})
    nm = statistics.median(times["nmap -sn"])
    print(f"\ndiscovery benchmark ({time.strftime('%Y-%m-%d %H:%M')}, routed /24, 210 hosts in 4 groups, median of {args.reps})")
    rows = []
    for tool, ts in times.items():
        med = statistics.median(ts)
        g = found[tool]
        line = ", ".join(f"{k} {v}/{len(GROUPS[k])}" for k, v in g.items() if k in GROUPS)
        print(f"{tool:<20} {med:6.2f} s  x{med / nm:.2f}  {line}  total {sum(g[k] for k in GROUPS)}/210")
        rows.append(f"| {tool} | {med:.2f} | {med / nm:.2f} | {' | '.join(str(g[k]) for k in GROUPS)} | {sum(g[k] for k in GROUPS)}/210 |")
    if args.md:
        print("\n| tool | median s | time / nmap's | all kinds /60 | no echo /60 | no ICMP /60 | UDP only /30 | found |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
