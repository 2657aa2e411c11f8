#!/usr/bin/env python3
"""OS detection over IPv6 (issue 17): hostprint -O vs nmap 7.93 -6 -O on every cell of the IPv6
stack matrix (hostprint/lab/matrix6.py), in one run, same ports (80,8080 open, 81 closed).

Grades as bench/osdetect/run.py: right = family right and, for Linux, a generation range that
contains the kernel's major version; family = the family alone. nmap's IPv6 classifier is compiled
into nmap (FPModel.cc), so "No OS matches" is its answer whenever no class is close enough.

Usage (root): python3 bench/osdetect/run6.py [--no-nmap] [--cells v6-default,v6-gvisor,...]
                                            [--fingerprints] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from answers import answered_cells  # noqa: E402  (bench/osdetect/answers.py)

from hostprint.lab.matrix import family_right, right  # noqa: E402
from hostprint.lab.matrix6 import KINDS6, LINUX6_CELLS, matrix6_lab, plan6  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-nmap", action="store_true")
    ap.add_argument("--cells", help="comma-separated cell names or kinds (default: all)")
    ap.add_argument("--fingerprints", action="store_true", help="print hostprint's IPv6 test lines per cell")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    sel = set(args.cells.split(",")) if args.cells else None
    linux = [n for n in LINUX6_CELLS if sel is None or n in sel or "linux-ns" in sel]
    kinds = tuple(k for k in KINDS6 if sel is None or k in sel or (k == "linux-ns" and linux)
                  or any(n.endswith(k) for n in sel))
    cells = plan6(linux, kinds)
    rows = []
    t0 = time.monotonic()
    with matrix6_lab(cells, name="bmx6") as built:
        setup_s = time.monotonic() - t0
        for c, h, n in answered_cells(built, rows, nmap=not args.no_nmap, ipv6=True):
            row: dict[str, Any] = {"cell": c.name, "kind": c.kind, "setting": c.setting, "version": c.version,
                                   "hostprint": h, "h_right": right(c, h["family"], h["generation"], h.get("name", "")),
                                   "h_family": family_right(c, h["family"], h.get("name", ""))}
            if n is not None:
                row["nmap"] = n
                row["n_right"] = right(c, None, None, n["name"])
                row["n_family"] = family_right(c, None, n["name"])
            rows.append(row)
            print(f"{c.name}: hostprint {h['answer']} [{'right' if row['h_right'] else 'WRONG'}]"
                  + (f"; nmap {n['answer']}" if n else ""), file=sys.stderr)
            if args.fingerprints and h.get("stack_fp"):
                print(f"# {c.name} ({c.setting})\n{h['stack_fp']}\n", file=sys.stderr)

    def yn(v: bool) -> str:
        return "yes" if v else "no"

    print(f"\nOS detection over IPv6 ({time.strftime('%Y-%m-%d %H:%M')}, lab kernel {platform.release()}, "
          f"set-up {setup_s:.0f} s)\n")
    print("| cell | setting | hostprint -O | s | right | nmap -6 -O | s | right |\n|---|---|---|---:|---|---|---:|---|")
    for r in rows:
        if "hostprint" not in r:
            print(f"| {r['cell']} | {r['setting']} | skipped: {r['skipped']} | | | | | |")
            continue
        h = r["hostprint"]
        line = f"| {r['cell']} | {r['setting']} | {h['answer']} | {h['time']:.1f} | {yn(r['h_right'])} |"
        if "nmap" in r:
            nm = r["nmap"]
            line += f" {nm['answer'][:70]} | {nm['time']:.1f} | {yn(r['n_right'])} |"
        else:
            line += " | | |"
        print(line)
    ran = [r for r in rows if "hostprint" in r]
    th = sum(r["hostprint"]["time"] for r in ran)
    print(f"\nhostprint: right {sum(r['h_right'] for r in ran)}/{len(ran)}; {th:.1f} s in all "
          f"({th / max(len(ran), 1):.2f} s per host)")
    if any("nmap" in r for r in ran):
        tn = sum(r["nmap"]["time"] for r in ran if "nmap" in r)
        both = sum(r["h_right"] and r["n_right"] for r in ran)
        print(f"nmap -6:   right {sum(r['n_right'] for r in ran)}/{len(ran)}; {tn:.1f} s in all "
              f"({tn / max(len(ran), 1):.2f} s per host); hostprint right where nmap is right: "
              f"{both}/{sum(r['n_right'] for r in ran)}; time per host {th / max(tn, 1e-9):.2f}x nmap's")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
