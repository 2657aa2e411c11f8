"""Each tool's -O answer for one stack-matrix cell, shared by the IPv4 and IPv6 OS-detection
benchmarks (run.py, run6.py): the same hostprint command and the same reading of nmap's report, so
the two tables grade alike."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from hostprint.lab.matrix import Cell


def run_hostprint(cell: Cell) -> dict[str, Any]:
    assert cell.run is not None
    t = time.monotonic()
    r = cell.run([sys.executable, "-m", "hostprint", "scan", "-sS", "-O", "-n", "-Pn", "-p", cell.ports, cell.address,
                  "-oJ", "-", "--no-db", "--progress", "never"], timeout=300)
    dt = time.monotonic() - t
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    if r.returncode != 0 or not lines:
        return {"time": dt, "answer": f"error: {r.stderr.strip()[-200:]}", "family": None, "generation": None,
                "confidence": None, "arch": [], "name": ""}
    h = json.loads(lines[0])
    os_ = h.get("os") or {}
    ms = os_.get("matches") or []
    arch = [a["kind"] for a in os_.get("architecture") or []]
    fp = (os_.get("stack") or {}).get("fingerprint")
    if ms:
        m = ms[0]
        return {"time": dt, "answer": f"{m['name']} ({m['confidence']:.0%})", "name": m["name"], "family": m.get("family"),
                "generation": m.get("generation"), "confidence": m["confidence"], "arch": arch, "stack_fp": fp}
    u = os_.get("unknown") or {}
    return {"time": dt, "answer": f"unknown, nearest {u.get('nearest')}", "name": "", "family": None, "generation": None,
            "confidence": None, "arch": arch, "stack_fp": fp}


def run_nmap(cell: Cell, ipv6: bool = False) -> dict[str, Any]:
    """nmap -O (-6 -O with `ipv6`); over IPv6 a "No OS matches" is said as such (nmap's IPv6
    classifier is compiled in, so that is its answer whenever no class is close enough)."""
    assert cell.run is not None
    t = time.monotonic()
    r = cell.run(["nmap", *(["-6"] if ipv6 else []), "-O", "--osscan-guess", "-n", "-Pn", "-p", cell.ports, cell.address],
                 timeout=600)
    dt = time.monotonic() - t
    m = re.search(r"^(OS details|Aggressive OS guesses):\s*(.*)$", r.stdout, re.M)
    if not m:
        why = "No OS matches" if ipv6 and "No OS matches" in r.stdout else "none"
        return {"time": dt, "answer": why, "name": "", "confidence": None}
    first = m.group(2).split(", ")[0]
    pct = re.search(r"\((\d+)%\)", first)
    exact = m.group(1) == "OS details"
    return {"time": dt, "answer": ("" if exact else "guess: ") + first, "name": first,
            "confidence": int(pct.group(1)) / 100 if pct else (1.0 if exact else None)}


def answered_cells(built: Iterable[Cell], rows: list[dict[str, Any]], nmap: bool,
                   ipv6: bool = False) -> Iterator[tuple[Cell, dict[str, Any], dict[str, Any] | None]]:
    """(cell, hostprint's answer, nmap's or None) for every cell that runs; a skipped cell goes
    into `rows` at once with the reason, so both tables list every cell."""
    for c in built:
        if c.skipped or c.run is None:
            rows.append({"cell": c.name, "kind": c.kind, "setting": c.setting, "skipped": c.skipped})
            continue
        yield c, run_hostprint(c), run_nmap(c, ipv6) if nmap else None
