#!/usr/bin/env python3
"""OS detection benchmark over the stack matrix (hostprint/lab/matrix.py): hostprint -O vs nmap -O
on every cell, in one run, same ports (80,8080 open and 81 closed; 80,81 for relays and lwIP).

Per cell: each tool's answer, time per host, and three grades:
- right:  family right and, for Linux, a generation range that contains the kernel's major version;
- family: the family alone;
- newest: for Linux cells, the answer reaches the newest Linux generation the tool's own DB knows
          (nmap 7.93's newest Linux print is 5.x, so "right" is out of its reach on a 6.x kernel;
          this column asks whether it got as far as its DB allows).
The load-balancer cell is graded on hostprint's architecture finding (it is two hosts, not one).

Calibration: the expected calibration error of hostprint's combined verdict confidence (os.matches[0])
over the single-host cells, 10 equal-width bins; cells where the verdict is "unknown" claim nothing
and are counted apart. nmap's first-guess percentage is shown the same way for comparison.

Usage (root): python3 bench/osdetect/run.py [--no-nmap] [--cells rmem-6M,qemu,...] [--json out.json]
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
from ece import ece  # noqa: E402  (bench/osdetect/ece.py)

from hostprint.lab.matrix import KINDS, LINUX_CELLS, Cell, family_right, majors, matrix_lab, plan, right  # noqa: E402


def newest_majors() -> dict[str, int]:
    """The newest Linux major version each tool's DB names."""
    from hostprint.signatures import nmap_os_db, stack_db

    ours = [m for fp in stack_db.load().prints for c in fp.classes if c.family == "Linux" for m in majors(c.generation)]
    out = {"hostprint": max(ours)}
    try:
        db = nmap_os_db.load(None)
        out["nmap"] = max(m for fp in db.prints for c in fp.classes if c.family == "Linux" for m in majors(c.generation))
    except Exception:  # noqa: BLE001 - no nmap-os-db installed
        pass
    return out


def reaches_newest(cell: Cell, family: str | None, generation: str | None, name: str, newest: int | None) -> bool:
    if cell.family != "Linux" or newest is None or not family_right(cell, family, name):
        return family_right(cell, family, name)
    ms = majors(generation or name)
    return bool(ms) and max(ms) >= newest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-nmap", action="store_true")
    ap.add_argument("--cells", help="comma-separated cell names or kinds (default: all)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    sel = set(args.cells.split(",")) if args.cells else None
    linux = [n for n in LINUX_CELLS if sel is None or n in sel or "linux-ns" in sel]
    kinds = tuple(k for k in KINDS if sel is None or k in sel or (k == "linux-ns" and linux))
    cells = plan(linux, kinds)
    newest = newest_majors()
    rows = []
    t0 = time.monotonic()
    with matrix_lab(cells, name="bmx") as built:
        setup_s = time.monotonic() - t0
        for c, h, n in answered_cells(built, rows, nmap=not args.no_nmap):
            row: dict[str, Any] = {"cell": c.name, "kind": c.kind, "setting": c.setting, "version": c.version, "hostprint": h}
            if c.kind == "lb":
                row["h_right"] = row["h_family"] = row["h_newest"] = "load-balancer" in h["arch"]
            else:
                row["h_right"] = right(c, h["family"], h["generation"], h.get("name", ""))
                row["h_family"] = family_right(c, h["family"], h.get("name", ""))
                row["h_newest"] = reaches_newest(c, h["family"], h["generation"], h.get("name", ""), newest.get("hostprint"))
            if n is not None:
                row["nmap"] = n
                row["n_right"] = c.kind != "lb" and right(c, None, None, n["name"])
                row["n_family"] = c.kind != "lb" and family_right(c, None, n["name"])
                row["n_newest"] = c.kind != "lb" and reaches_newest(c, None, None, n["name"], newest.get("nmap"))
            rows.append(row)
            print(f"{c.name}: hostprint {h['answer']} {'arch ' + ','.join(h['arch']) if h['arch'] else ''} "
                  f"[{'right' if row['h_right'] else 'WRONG'}]" + (f"; nmap {n['answer']}" if n else ""), file=sys.stderr)
    ran = [r for r in rows if "hostprint" in r]
    single = [r for r in ran if r["kind"] != "lb"]
    pairs = [(r["hostprint"]["confidence"], bool(r["h_right"])) for r in single if r["hostprint"]["confidence"] is not None]
    npairs = [(r["nmap"]["confidence"], bool(r["n_right"])) for r in single if "nmap" in r and r["nmap"]["confidence"] is not None]
    spurious = [r["cell"] for r in single if "load-balancer" in r["hostprint"]["arch"]
                or ("nat" in r["hostprint"]["arch"] and r["kind"] not in ("slirp4netns", "pasta"))
                or ("port-forward" in r["hostprint"]["arch"])]

    def yn(v: bool) -> str:
        return "yes" if v else "no"

    print(f"\nOS detection over the stack matrix ({time.strftime('%Y-%m-%d %H:%M')}, lab kernel {platform.release()}, "
          f"set-up {setup_s:.0f} s; newest Linux generation in each DB: "
          + ", ".join(f"{k} {v}.x" for k, v in newest.items()) + ")\n")
    print("| cell | setting | hostprint -O | s | right | family | newest | nmap -O | s | right | family | newest |\n"
          "|---|---|---|---:|---|---|---|---|---:|---|---|---|")
    for r in rows:
        if "hostprint" not in r:
            print(f"| {r['cell']} | {r['setting']} | skipped: {r['skipped']} | | | | | | | | | |")
            continue
        h = r["hostprint"]
        arch = f"; architecture: {', '.join(h['arch'])}" if h["arch"] else ""
        line = f"| {r['cell']} | {r['setting']} | {h['answer']}{arch} | {h['time']:.1f} | {yn(r['h_right'])} | {yn(r['h_family'])} | {yn(r['h_newest'])} |"
        if "nmap" in r:
            n = r["nmap"]
            line += f" {n['answer'][:70]} | {n['time']:.1f} | {yn(r['n_right'])} | {yn(r['n_family'])} | {yn(r['n_newest'])} |"
        else:
            line += " | | | | |"
        print(line)

    def count(key: str, rs: list[dict[str, Any]]) -> str:
        return f"{sum(bool(r.get(key)) for r in rs)}/{len(rs)}"

    th = sum(r["hostprint"]["time"] for r in ran)
    print(f"\nhostprint: right {count('h_right', ran)}, family {count('h_family', ran)}, newest {count('h_newest', ran)}; "
          f"{th:.1f} s in all ({th / max(len(ran), 1):.1f} s per host)")
    if any("nmap" in r for r in ran):
        tn = sum(r["nmap"]["time"] for r in ran if "nmap" in r)
        print(f"nmap:      right {count('n_right', ran)}, family {count('n_family', ran)}, newest {count('n_newest', ran)}; "
              f"{tn:.1f} s in all ({tn / max(len(ran), 1):.1f} s per host); hostprint/nmap time {th / max(tn, 1e-9):.2f}x")
    unknown = sum(1 for r in single if r["hostprint"]["confidence"] is None)
    print(f"calibration: hostprint ECE {ece(pairs):.3f} over {len(pairs)} single-host verdicts "
          f"(mean confidence {sum(c for c, _ in pairs) / max(len(pairs), 1):.3f}, "
          f"right {sum(ok for _, ok in pairs)}/{len(pairs)}; {unknown} unknown)"
          + (f"; nmap first-guess % ECE {ece(npairs):.3f} over {len(npairs)}" if npairs else ""))
    print(f"architecture findings on single hosts that are not their own relay class: {', '.join(spurious) or 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ece": ece(pairs), "newest": newest}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
