#!/usr/bin/env python3
"""Port-scan benchmark: hostprint vs nmap vs masscan, side by side in one run, on one lab.

(a) one host, all 65,535 ports, five open, a block of 100 filtered (DROP) ports;
(b) 64 addresses served by one target kernel, all ports each (4.2 M probes), five open, no filter
    (the issue's anchor: nmap about 16 s; with a DROP block per address nmap took 95 s here).
Each tool runs inside the lab's scanner namespace; wall time is the whole process (interpreter
start included for hostprint). Port states are compared with nmap's (masscan reports open ports
only, so only those are compared). Prints a table with ratios to nmap; `--md` also prints the
Markdown rows recorded in bench/RESULTS.md. Not a test: machines are noisy, so nothing asserts.

--ipv6 (issue 17): the same two scenarios over IPv6 (2001:2::10 with the DROP block; 64 IPv6
addresses 2001:2::1:1-1:64 on one kernel), hostprint vs nmap -6 (masscan is left out).

Usage (root): python3 bench/portscan/run.py [--reps 3] [--skip-masscan] [--md] [--ipv6]
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

OPEN = ["22", "80", "443", "3306", "31337"]
A = "198.18.0.10"
B_ADDRS = [f"198.18.1.{i}" for i in range(1, 65)]
A6 = "2001:2::10"
B6_ADDRS = [f"2001:2::1:{i}" for i in range(1, 65)]


def spec(ipv6: bool = False) -> LabSpec:
    services = [f"tcp-listen:{p}" for p in OPEN]
    if ipv6:  # the same hosts, dual-stack; b's 64 IPv6 addresses on one kernel
        return LabSpec(name="bport6", ipv6=True, hosts=[
            HostSpec(name="a", address=A, address6=A6, services=services, firewall=["tcp dport 1000-1099 drop"]),
            HostSpec(name="b", address=B_ADDRS[0], address6=B6_ADDRS[0], extra_addresses=B6_ADDRS[1:],
                     services=services),
        ])
    return LabSpec(name="bport", hosts=[
        HostSpec(name="a", address=A, services=services, firewall=["tcp dport 1000-1099 drop"]),
        HostSpec(name="b", address=B_ADDRS[0], extra_addresses=B_ADDRS[1:], services=services),
    ])


def timed(lab: Lab, argv: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, **kw)
    return time.monotonic() - t, r


def nmap_states(xml: str) -> dict[str, tuple[frozenset, tuple]]:
    out = {}
    for h in ET.fromstring(xml).iter("host"):
        addr = h.find("address").get("addr")
        ports = {int(p.get("portid")): p.find("state").get("state") for p in h.iter("port")}
        counts: dict[str, int] = {}
        for s in ports.values():
            counts[s] = counts.get(s, 0) + 1
        for e in h.iter("extraports"):
            counts[e.get("state")] = counts.get(e.get("state"), 0) + int(e.get("count"))
        out[addr] = (frozenset(p for p, s in ports.items() if s == "open"), tuple(sorted(counts.items())))
    return out


def hostprint_states(jsonl: str) -> dict[str, tuple[frozenset, tuple]]:
    out = {}
    for line in jsonl.splitlines():
        h = json.loads(line)
        counts: dict[str, int] = {}
        for p in h["ports"]:
            counts[p["state"]] = counts.get(p["state"], 0) + 1
        for e in h["extraports"]:
            counts[e["state"]] = counts.get(e["state"], 0) + e["count"]
        out[h["address"]] = (frozenset(p["port"] for p in h["ports"] if p["state"] == "open"), tuple(sorted(counts.items())))
    return out


def masscan_open(out: str) -> dict[str, frozenset]:
    res: dict[str, set] = {}
    for line in out.splitlines():
        if line.startswith("Discovered open port"):
            parts = line.split()
            port = int(parts[3].split("/")[0])
            res.setdefault(parts[5], set()).add(port)
    return {k: frozenset(v) for k, v in res.items()}


def run_scenario(lab: Lab, name: str, targets: list[str], reps: int, masscan: bool, ipv6: bool = False) -> dict:
    rows: dict[str, list[float]] = {"hostprint": [], "nmap": [], "masscan": []}
    agree = {"hostprint": [], "masscan": []}
    truth = None
    for rep in range(reps):
        dt, r = timed(lab, ["nmap", *(["-6"] if ipv6 else []), "-sS", "-n", "-Pn", "-T4", "-p-", "-oX", "-", *targets],
                      timeout=900)
        assert r.returncode == 0, r.stderr
        rows["nmap"].append(dt)
        truth = nmap_states(r.stdout)
        dt, r = timed(lab, [sys.executable, "-m", "hostprint", "scan", "-sS", "-n", "-Pn", "-T4", "-p-", "-oJ", "-",
                            "--no-db", "--progress", "never", *targets], timeout=900)
        assert r.returncode == 0, r.stderr
        rows["hostprint"].append(dt)
        agree["hostprint"].append(hostprint_states(r.stdout) == truth)
        if masscan:
            mac = lab.host("a" if name == "a" else "b").mac
            pinger = lab.spawn(lab.scanner_ns, ["ping", "-i", "0.05", "-q", targets[0]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                dt, r = timed(lab, ["masscan", *targets, "-p0-65535", "--rate", "500000", "--interface", "eth0",
                                    "--router-mac", mac, "--adapter-ip", "198.18.0.200",
                                    "--adapter-mac", lab.scanner_mac, "--wait", "1"], timeout=600)
            finally:
                pinger.kill()
            rows["masscan"].append(dt)
            opened = masscan_open(r.stdout)
            agree["masscan"].append(all(opened.get(t, frozenset()) == truth[t][0] for t in targets))
    return {"times": rows, "agree": agree, "truth": truth}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-masscan", action="store_true")
    ap.add_argument("--md", action="store_true")
    ap.add_argument("--only", choices=["a", "b"])
    ap.add_argument("--ipv6", action="store_true", help="the scenarios over IPv6, against nmap -6")
    args = ap.parse_args()
    results = {}
    with Lab(spec(args.ipv6)) as lab:
        for name, targets in (("a", [A6] if args.ipv6 else [A]), ("b", B6_ADDRS if args.ipv6 else B_ADDRS)):
            if args.only and args.only != name:
                continue
            results[name] = run_scenario(lab, name, targets, args.reps, not args.skip_masscan and not args.ipv6,
                                         ipv6=args.ipv6)
    fam = "IPv6, nmap -6" if args.ipv6 else "IPv4"
    print(f"\nport scan benchmark ({fam}; {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, median of {args.reps})")
    print(f"{'scenario':<34}{'tool':<11}{'median s':>9}{'min s':>8}{'vs nmap':>9}  states equal nmap's")
    md = []
    for name, res in results.items():
        label = "(a) 1 host x 65,535 ports" if name == "a" else "(b) 64 addresses x 65,535 ports"
        if args.ipv6:
            label = label.replace("host", "IPv6 host").replace("addresses", "IPv6 addresses")
        nm = statistics.median(res["times"]["nmap"])
        for tool in ("nmap", "hostprint", "masscan"):
            ts = res["times"][tool]
            if not ts:
                continue
            med = statistics.median(ts)
            ok = "reference" if tool == "nmap" else ("open ports only: " if tool == "masscan" else "") + \
                f"{sum(res['agree'][tool])}/{len(res['agree'][tool])} runs"
            print(f"{label:<34}{tool:<11}{med:>9.2f}{min(ts):>8.2f}{med / nm:>9.2f}  {ok}")
            md.append(f"| {label} | {tool} | {med:.2f} | {min(ts):.2f} | {med / nm:.2f} | {ok} |")
    if args.md:
        print("\n| scenario | tool | median s | min s | time / nmap's | states equal nmap's |\n|---|---|---:|---:|---:|---|")
        print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
