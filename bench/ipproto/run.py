#!/usr/bin/env python3
"""IP protocol scan of all 256 protocols on one host: hostprint -sO vs nmap -sO, side by side.

Lab `bipp`: two hosts on this machine's kernel (6.18: ICMP, IGMP, TCP, UDP, UDP-Lite; no SCTP,
GRE, ESP, AH — CONFIG_MODULES is off), each with nft dropping ESP and AH and rejecting IP-in-IP
(4) with admin-prohibited:
  limited 198.18.0.80  every ICMP sysctl at its default: protocol unreachables 1/s after a burst of 6
  quiet   198.18.0.81  net.ipv4.icmp_ratelimit = 0 (the host-wide 1000/s bucket still applies)
Each tool runs `-sO -Pn -n ADDRESS` (all 256 protocols) inside the scanner namespace, one host
at a time, after 7 s of quiet (the per-destination bucket full again); wall time is the whole
process. Correct = every protocol's state equals the truth (TRUTH below). Not a test.

Usage (root): python3 bench/ipproto/run.py [--reps 2] [--md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

from hostprint.lab import HostSpec, Lab, LabSpec  # noqa: E402

LIMITED, QUIET = "198.18.0.80", "198.18.0.81"
FW = ["meta l4proto { esp, ah } drop", "meta l4proto 4 reject with icmp type admin-prohibited"]
TRUTH = {p: "closed" for p in range(256)}
TRUTH.update({1: "open", 6: "open", 17: "open", 2: "open|filtered", 136: "open|filtered", 50: "open|filtered",
              51: "open|filtered", 4: "filtered"})


def spec() -> LabSpec:
    return LabSpec(name="bipp", hosts=[
        HostSpec(name="limited", address=LIMITED, firewall=FW),
        HostSpec(name="quiet", address=QUIET, firewall=FW, sysctls={"net.ipv4.icmp_ratelimit": "0"}),
    ])


def _states_xml(path: str) -> dict[int, str]:
    host = ET.parse(path).getroot().find("host")
    st = {int(p.get("portid")): p.find("state").get("state") for p in host.iter("port")}
    rest = next((e.get("state") for e in host.iter("extraports")), None)
    return {p: st.get(p, rest) for p in range(256)}


def run(lab: Lab, tool: str, addr: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        if tool == "hostprint":
            argv = [sys.executable, "-m", "hostprint", "scan", "-sO", "-Pn", "-n", addr, "-oX", f.name, "--no-db",
                    "--progress", "never"]
        else:
            argv = ["nmap", "-sO", "-Pn", "-n", addr, "-oX", f.name]
        t = time.monotonic()
        r = lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, cwd=ROOT,
                     env={**os.environ, "PYTHONPATH": ROOT}, timeout=3600)
        el = time.monotonic() - t
        if r.returncode != 0:
            return {"time": el, "error": r.stderr.strip()[-200:]}
        st = _states_xml(f.name)
    wrong = {p: (st[p], s) for p, s in TRUTH.items() if st[p] != s}
    return {"time": el, "wrong": len(wrong), "wrong_detail": dict(list(wrong.items())[:6])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--md", action="store_true")
    a = ap.parse_args()
    rows = []
    with Lab(spec()) as lab:
        for name, addr in (("quiet (icmp_ratelimit 0)", QUIET), ("default ICMP limits", LIMITED)):
            res: dict[str, list[dict]] = {"hostprint": [], "nmap": []}
            for _ in range(a.reps):
                for tool in ("hostprint", "nmap"):
                    time.sleep(7)
                    res[tool].append(run(lab, tool, addr))
                    print(json.dumps({"host": name, "tool": tool, **res[tool][-1]}, default=str), file=sys.stderr,
                          flush=True)
            rows.append((name, res))
    lines = ["| host | hostprint time (s) | hostprint wrong of 256 | nmap time (s) | nmap wrong of 256 |",
             "|---|---|---|---|---|"]
    for name, res in rows:
        def cell(rs: list[dict], key: str) -> str:
            vals = [r[key] for r in rs if key in r]
            if not vals:
                return "error"
            return " / ".join(f"{v:.1f}" if key == "time" else str(v) for v in vals)
        lines.append(f"| {name} | {cell(res['hostprint'], 'time')} | {cell(res['hostprint'], 'wrong')} | "
                     f"{cell(res['nmap'], 'time')} | {cell(res['nmap'], 'wrong')} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
