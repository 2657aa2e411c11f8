#!/usr/bin/env python3
"""OS detection benchmark: hostprint -O vs nmap -O on the same lab hosts, in one run.

Hosts: the lab kernel (Linux 6.18 here) with default sysctls, and with the "old stack"
personality (TTL 128, no TCP timestamps / SACK / window scaling). Both tools get the same ports
(-p 22,80,81: open, open, closed). Prints each tool's best guess per host and wall time per host.
The truth is the lab's kernel (uname -r); nmap 7.93's DB has no Linux 6.x entry.
hostprint -O currently matches against the installed nmap-os-db (its own stack DB is not built
yet, see NOTES.md), so this measures the probe engine and the matcher, not a new DB.
Usage (root): python3 bench/osdetect/run.py [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402

HOSTS = {"linux-default": "198.18.0.10", "linux-old-personality": "198.18.0.11"}


def spec() -> LabSpec:
    return LabSpec(name="bos", hosts=[
        HostSpec(name="a", address=HOSTS["linux-default"], services=["nginx:80", "ssh:22"]),
        HostSpec(name="b", address=HOSTS["linux-old-personality"], services=["nginx:80", "ssh:22"],
                 sysctls={"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0",
                          "net.ipv4.tcp_sack": "0", "net.ipv4.tcp_window_scaling": "0"}),
    ])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with Lab(spec()) as lab:
        for name, addr in HOSTS.items():
            t_n, t_h = [], []
            guess_n = guess_h = ""
            for _ in range(args.reps):
                t = time.monotonic()
                r = lab.exec(lab.scanner_ns, ["nmap", "-O", "-n", "-Pn", "-p", "22,80,81", addr], capture_output=True, text=True)
                t_n.append(time.monotonic() - t)
                m = re.search(r"^(OS details|Aggressive OS guesses):\s*(.*)$", r.stdout, re.M)
                guess_n = m.group(2)[:60] if m else ("no exact match" if "No exact OS matches" in r.stdout else "none")
                r = lab.exec(lab.scanner_ns, ["nmap", "-O", "--osscan-guess", "-n", "-Pn", "-p", "22,80,81", addr],
                             capture_output=True, text=True)
                m = re.search(r"^(OS details|Aggressive OS guesses):\s*(.*)$", r.stdout, re.M)
                guess_n += "; --osscan-guess: " + (m.group(2).split(", ")[0] if m else "none")
                t = time.monotonic()
                r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "scan", "-sS", "-O", "-n", "-Pn", "-p", "22,80,81",
                                              addr, "-oJ", "-", "--no-db", "--progress", "never"], capture_output=True, text=True)
                t_h.append(time.monotonic() - t)
                h = json.loads(r.stdout.splitlines()[0])
                ms = h["os"].get("matches") or []
                guess_h = f"{ms[0]['name']} ({ms[0]['confidence']:.0%})" if ms else "no match"
            rows.append((name, statistics.median(t_n), statistics.median(t_h), guess_n, guess_h))
    print(f"\nOS detection benchmark ({time.strftime('%Y-%m-%d %H:%M')}, lab kernel {platform.release()}, median of {args.reps})")
    print("| host | nmap -O s | hostprint -O s | time / nmap's | nmap's answer | hostprint's answer |\n|---|---:|---:|---:|---|---|")
    for name, tn, th, gn, gh in rows:
        print(f"| {name} | {tn:.2f} | {th:.2f} | {th / tn:.2f} | {gn} | {gh} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
