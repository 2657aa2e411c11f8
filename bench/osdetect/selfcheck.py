#!/usr/bin/env python3
"""Stack-DB self-check against nmap's measured prints (the numbers bench/RESULTS.md quotes).

Every print of nmap-os-db whose family hostprint's class DB covers is turned into one concrete
observation (match.stack.representative: the first alternative of every expression) and classified
against hostprint's classes:
- "right family first": the best class is of the print's family (per family and overall);
- "unknown rule": for Linux, Windows, FreeBSD, OpenBSD and Cisco IOS prints, with the print's own
  family removed from our DB, the share that comes out unknown (no match, or an unknown verdict);
  and, with the family present, the share that stays known.
Also times one classification and loading the DB. tests/test_stack_db.py runs every third print
with looser bounds; this script runs them all (--step 1) and prints the numbers.

Usage: python3 bench/osdetect/selfcheck.py [--db /usr/share/nmap/nmap-os-db] [--step 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ece import ece, reliability  # noqa: E402  (bench/osdetect/ece.py)

from hostprint.match.stack import StackMatcher, classify, representative  # noqa: E402
from hostprint.signatures import nmap_os_db, stack_db  # noqa: E402

UNKNOWN_FAMILIES = ("linux", "windows", "freebsd", "openbsd", "ios")


def family(name: str) -> str:
    n = name.lower()
    return {"mac os x": "apple", "macos": "apple", "os x": "apple", "iphone os": "apple"}.get(n, n)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="/usr/share/nmap/nmap-os-db")
    ap.add_argument("--step", type=int, default=1, help="take every STEP-th print (the test uses 3)")
    args = ap.parse_args()
    if not os.path.exists(args.db):
        print(f"no nmap-os-db at {args.db} (Debian package nmap-common)", file=sys.stderr)
        return 2
    t = time.perf_counter()
    ours = stack_db.load()
    load_ms = (time.perf_counter() - t) * 1000
    ndb = nmap_os_db.load(args.db)
    fams = {family(fp.classes[0].family) for fp in ours.prints}
    full = StackMatcher(ours)
    without = {f: StackMatcher(nmap_os_db.OsDb(ours.points, [fp for fp in ours.prints
                                                             if family(fp.classes[0].family) != f], "t"))
               for f in UNKNOWN_FAMILIES}
    right: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    wrong_family = unknown_miss = 0
    gone_unknown = gone_tried = stay_known = stay_tried = 0
    spent = 0.0
    pairs: list[tuple[float, bool]] = []  # (verdict confidence of the stack technique alone, right family)
    for fp in ndb.prints[::args.step]:
        if not fp.classes:
            continue
        f = "apple" if fp.classes[0].vendor == "Apple" else family(fp.classes[0].family)
        if f not in fams:
            continue
        obs = representative(fp)
        t = time.perf_counter()
        v = classify(obs, [("hostprint", full)])
        spent += time.perf_counter() - t
        total[f] += 1
        best = v.matches[0] if v.matches else None
        if best:
            pairs.append((0.9 * best.confidence, ("apple" if best.vendor == "Apple" else family(best.family or "")) == f))
        if best and ("apple" if best.vendor == "Apple" else family(best.family or "")) == f:
            right[f] += 1
        elif best:
            wrong_family += 1
        else:
            unknown_miss += 1
        if f in UNKNOWN_FAMILIES:
            gone_tried += 1
            w = classify(obs, [("hostprint", without[f])])
            gone_unknown += not w.matches or w.unknown is not None
            stay_tried += 1
            stay_known += bool(v.matches)
    n = sum(total.values())
    print(f"nmap-os-db {args.db}: {len(ndb.prints)} prints, {n} of families our {len(ours.prints)} classes cover"
          f" (every {args.step}. print)")
    print(f"right family first: {sum(right.values()) / n:.1%} overall — "
          + ", ".join(f"{f} {right[f] / total[f]:.1%} ({total[f]})" for f in sorted(total, key=lambda f: -total[f])))
    print(f"misses: {unknown_miss} unknown, {wrong_family} another family")
    print(f"unknown rule: own family removed -> {gone_unknown / gone_tried:.1%} unknown ({gone_tried} prints of "
          f"{', '.join(UNKNOWN_FAMILIES)}); family present -> {stay_known / stay_tried:.1%} stay known")
    print(f"calibration of a stack-only verdict (0.9 x class accuracy, as match/verdict.py weighs the stack "
          f"technique) on these held-out prints, family right: ECE {ece(pairs):.3f} over {len(pairs)}; "
          + "; ".join(f"{lo:.1f}-{hi:.1f}: {k} at {conf:.2f} -> {acc:.2f} right" for lo, hi, k, conf, acc in reliability(pairs)))
    print(f"classify: {spent / n * 1000:.1f} ms per observation; loading and compiling our DB: {load_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
