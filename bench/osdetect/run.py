#!/usr/bin/env python3
"""OS detection benchmark: hostprint -O vs nmap -O on the same lab hosts, in one run.

Hosts: the lab kernel (Linux 6.18 here) with default sysctls, with the "old stack" personality
(TTL 128, no TCP timestamps / SACK / window scaling), with forced SYN cookies, with timestamps but no
random offsets, and a round-robin DNAT load balancer in front of two Linux backends. Both tools get
the same ports (-p 22,80,81 or 80,81: open …, closed). Prints each tool's best answer per host, wall
time per host, and whether the answer is right: family Linux and a generation range that contains
the lab kernel's major version (nmap 7.93's DB has no Linux 6.x entry, so its best is a 5.x print).
hostprint uses its own class DB (the default --os-db hostprint).
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
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402
from hostprint.lab.stacks import build_lwip, start_lwip, start_synproxy  # noqa: E402
from hostprint.lab.usernet import binary, usernet  # noqa: E402

HOSTS = {"linux-default": "198.18.0.10", "linux-old-personality": "198.18.0.11", "linux-syncookies": "198.18.0.12",
         "linux-ts-no-offsets": "198.18.0.13", "load-balancer": "198.18.0.2", "synproxy": "198.19.0.20",
         "lwip": "198.18.0.50"}
PORTS = {"load-balancer": "80,81", "synproxy": "80,81", "lwip": "80,81"}
# what a right answer names: (pattern, check the Linux generation?)
TRUTH = {"synproxy": (r"synproxy", False), "lwip": (r"lwip", False),
         "slirp4netns": (r"slirp|qemu user mode", False), "pasta": (r"pasta|passt", False)}


def spec() -> LabSpec:
    return LabSpec(name="bos", hosts=[
        HostSpec(name="a", address=HOSTS["linux-default"], services=["nginx:80", "ssh:22"]),
        HostSpec(name="b", address=HOSTS["linux-old-personality"], services=["nginx:80", "ssh:22"],
                 sysctls={"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0",
                          "net.ipv4.tcp_sack": "0", "net.ipv4.tcp_window_scaling": "0"}),
        HostSpec(name="c", address=HOSTS["linux-syncookies"], services=["nginx:80", "ssh:22"],
                 sysctls={"net.ipv4.tcp_syncookies": "2"}),
        HostSpec(name="d", address=HOSTS["linux-ts-no-offsets"], services=["nginx:80", "ssh:22"],
                 sysctls={"net.ipv4.tcp_timestamps": "2"}),
        HostSpec(name="lb", address=HOSTS["load-balancer"], router=True, services=[]),
        HostSpec(name="be1", address="198.19.0.11", segment=2, services=["nginx:80"]),
        HostSpec(name="be2", address="198.19.0.12", segment=2, services=["nginx:80"],
                 sysctls={"net.ipv4.tcp_timestamps": "0"}),
        HostSpec(name="sp", address=HOSTS["synproxy"], segment=2, services=["nginx:80"]),
        HostSpec(name="lwh", address="198.18.0.51",
                 sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1"}),
    ])


def right(name: str, answer: str, generation: str | None, major: int) -> str:
    """'yes' when the answer names the stack that answered (for Linux: family and a generation range
    that covers the kernel's major version), 'family only' when only the family is right."""
    if name in TRUTH:
        return "yes" if re.search(TRUTH[name][0], answer, re.I) else "no"
    if "linux" not in answer.lower():
        return "no"
    text = generation or answer
    majors = [int(x) for x in re.findall(r"(?<![\d.])(\d+)\.(?:x|X|\d+)", text)]
    if not majors:
        return "family only"
    lo, hi = min(majors), max(majors)
    return "yes" if lo <= major <= hi else "family only"


def measure(run, name: str, addr: str, ports: str, reps: int, major: int) -> tuple:
    """nmap -O (and --osscan-guess) and hostprint -O on one target; `run(argv)` runs in the scanner's
    namespace. Returns a result row."""
    t_n, t_h = [], []
    guess_n = guess_h = first_n = ok_h = ""
    for _ in range(reps):
        t = time.monotonic()
        r = run(["nmap", "-O", "-n", "-Pn", "-p", ports, addr])
        t_n.append(time.monotonic() - t)
        m = re.search(r"^(OS details|Aggressive OS guesses):\s*(.*)$", r.stdout, re.M)
        guess_n = m.group(2)[:60] if m else ("no exact match" if "No exact OS matches" in r.stdout else "none")
        first_n = m.group(2).split(", ")[0] if m else ""
        r = run(["nmap", "-O", "--osscan-guess", "-n", "-Pn", "-p", ports, addr])
        m = re.search(r"^(OS details|Aggressive OS guesses):\s*(.*)$", r.stdout, re.M)
        guess_n += "; --osscan-guess: " + (m.group(2).split(", ")[0] if m else "none")
        first_n = first_n or (m.group(2).split(", ")[0] if m else "")
        t = time.monotonic()
        r = run([sys.executable, "-m", "hostprint", "scan", "-sS", "-O", "-n", "-Pn", "-p", ports, addr, "-oJ", "-",
                 "--no-db", "--progress", "never"])
        t_h.append(time.monotonic() - t)
        h = json.loads(r.stdout.splitlines()[0])
        ms = h["os"].get("matches") or []
        unknown = (h["os"].get("stack") or {}).get("unknown")
        guess_h = f"{ms[0]['name']} ({ms[0]['confidence']:.0%})" if ms else \
            (f"unknown, nearest {unknown['nearest']}" if unknown else "no match")
        arch = [a["kind"] for a in h["os"].get("architecture") or []]
        if arch:
            guess_h += "; architecture: " + ", ".join(arch)
        ok_h = right(name, ms[0]["name"] + " " + (ms[0].get("family") or ""), ms[0].get("generation"), major) if ms else "no"
    ok_n = right(name, first_n, None, major)
    return (name, statistics.median(t_n), statistics.median(t_h), guess_n, guess_h, ok_n, ok_h)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    rows = []
    major = int(platform.release().split(".")[0])
    with tempfile.TemporaryDirectory(prefix="hpt-bos-") as tmp, Lab(spec()) as lab:
        lab.exec("lb", ["nft", "-f", "-"], check=True, text=True, input=(
            "table ip hplb {\n chain pre {\n  type nat hook prerouting priority -100;\n"
            "  ip daddr 198.18.0.2 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 198.19.0.11, 1 : 198.19.0.12 }\n"
            " }\n}\n"))
        start_synproxy(lab, "lb", dest=HOSTS["synproxy"])  # only the "sp" host is behind SYNPROXY
        lwip = build_lwip(tmp)
        if lwip:
            start_lwip(lab, lwip, "lwh", HOSTS["lwip"])

        def in_lab(argv):
            return lab.exec(lab.scanner_ns, argv, capture_output=True, text=True)

        for name, addr in HOSTS.items():
            if name == "lwip" and not lwip:
                continue
            rows.append(measure(in_lab, name, addr, PORTS.get(name, "22,80,81"), args.reps, major))
    for i, kind in enumerate(("slirp4netns", "pasta")):
        if binary(kind) is None:
            continue
        with usernet(kind, f"bos{i}", 60 + 2 * i) as u:
            rows.append(measure(lambda argv: u.exec(argv, capture_output=True, text=True), kind, u.server_addr,
                                f"{u.port},81", args.reps, major))
    print(f"\nOS detection benchmark ({time.strftime('%Y-%m-%d %H:%M')}, lab kernel {platform.release()}, median of {args.reps})")
    print("| host | nmap -O s | hostprint -O s | time / nmap's | nmap's answer | right? | hostprint's answer | right? |\n"
          "|---|---:|---:|---:|---|---|---|---|")
    for name, tn, th, gn, gh, okn, okh in rows:
        print(f"| {name} | {tn:.2f} | {th:.2f} | {th / tn:.2f} | {gn} | {okn} | {gh} | {okh} |")
    tn, th = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"total time: nmap {tn:.1f} s, hostprint {th:.1f} s ({th / tn:.2f}x); right: nmap "
          f"{sum(r[5] == 'yes' for r in rows)}/{len(rows)}, hostprint {sum(r[6] == 'yes' for r in rows)}/{len(rows)}; "
          f"load balancer reported by hostprint: "
          f"{'yes' if any('load-balancer' in r[4] for r in rows if r[0] == 'load-balancer') else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
