"""Reader for the user's installed nmap-os-db (Debian nmap-common), read at run time, never shipped.

Format (nmap book, "nmap-os-db"; facts in ../shared/reference/stack-fingerprinting.md §2.4): a
`MatchPoints` block of per-attribute weights, then entries: comments, `Fingerprint NAME`, `Class
vendor | family | gen | type` lines, `CPE` lines, and test lines `SEQ(SP=…%GCD=…)` … `IE(…)`.
Reference values are expressions: `|` alternatives, `A-B` hex ranges, `>X` / `<X` hex bounds,
otherwise literal strings (an empty value is a value: `Q=` means "no quirks").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from hostprint.errors import UsageError

DEFAULT_PATHS = ["/usr/share/nmap/nmap-os-db", "/usr/local/share/nmap/nmap-os-db"]
TESTS = ("SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE")
_TEST_RE = re.compile(r"^([A-Z0-9]+)\((.*)\)\s*$")

Tests = dict[str, dict[str, str]]  # test -> attribute -> value or expression


@dataclass
class OsClass:
    vendor: str
    family: str
    generation: str
    device_type: str


@dataclass
class Fingerprint:
    name: str
    classes: list[OsClass] = field(default_factory=list)
    cpes: list[str] = field(default_factory=list)
    tests: Tests = field(default_factory=dict)
    line: int = 0
    sources: list[str] = field(default_factory=list)  # hostprint DB: where each fact comes from
    source: str = ""  # file the entry was read from


@dataclass
class OsDb:
    points: Tests  # test -> attribute -> weight (as strings parsed to int by `weight`)
    prints: list[Fingerprint]
    source: str

    def weight(self, test: str, attr: str) -> int:
        try:
            return int(self.points.get(test, {}).get(attr, "0"))
        except ValueError:
            return 0


def parse_test_line(line: str) -> tuple[str, dict[str, str]] | None:
    m = _TEST_RE.match(line.strip())
    if not m:
        return None
    attrs: dict[str, str] = {}
    body = m.group(2)
    if body:
        for part in body.split("%"):
            k, _, v = part.partition("=")
            attrs[k] = v
    return m.group(1), attrs


def parse(text: str, source: str = "<text>") -> OsDb:
    points: Tests = {}
    prints: list[Fingerprint] = []
    cur: Fingerprint | None = None
    in_points = False
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            in_points = in_points and bool(line)
            continue
        if line == "MatchPoints":
            in_points, cur = True, None
            continue
        if line.startswith("Fingerprint "):
            in_points = False
            cur = Fingerprint(line[len("Fingerprint "):].strip(), line=no)
            prints.append(cur)
            continue
        if line.startswith("Class ") and cur is not None:
            parts = [p.strip() for p in line[len("Class "):].split("|")]
            parts += [""] * (4 - len(parts))
            cur.classes.append(OsClass(*parts[:4]))
            continue
        if line.startswith("CPE ") and cur is not None:
            cur.cpes.append(line.split()[1])
            continue
        t = parse_test_line(line)
        if t is None:
            # every line of nmap's own file is one of the above: anything else is not this format
            raise UsageError(f"{source}:{no}: not an nmap-os-db line: {line[:60]!r}")
        if in_points:
            points[t[0]] = t[1]
        elif cur is not None:
            cur.tests[t[0]] = t[1]
    if not prints:
        raise UsageError(f"no Fingerprint entries in nmap OS DB {source}")
    for fp in prints:
        if not fp.tests:
            raise UsageError(f"{source}:{fp.line}: Fingerprint {fp.name[:60]!r} has no test lines (SEQ(...), T1(...) ...)")
    return OsDb(points, prints, source)


def load(path: str | None = None) -> OsDb:
    paths = [path] if path else DEFAULT_PATHS
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as fh:
                return parse(fh.read(), p)
        except OSError:
            continue
    raise UsageError(f"nmap OS DB not found ({', '.join(paths)}); install Debian nmap-common or give a path")


def _hex(v: str) -> int | None:
    try:
        return int(v, 16)
    except ValueError:
        return None


def expr_match(observed: str, expr: str) -> bool:
    """Does an observed attribute value satisfy a reference expression?"""
    if observed == expr:
        return True
    ov = _hex(observed)
    for alt in expr.split("|"):
        if alt == observed:
            return True
        if ov is None or not alt:
            continue
        if alt[0] == ">" and (b := _hex(alt[1:])) is not None:
            if ov > b:
                return True
        elif alt[0] == "<" and (b := _hex(alt[1:])) is not None:
            if ov < b:
                return True
        elif "-" in alt:
            lo, _, hi = alt.partition("-")
            a, b = _hex(lo), _hex(hi)
            if a is not None and b is not None and a <= ov <= b:
                return True
        elif (b := _hex(alt)) is not None and b == ov:
            return True
    return False


def default_path() -> str | None:
    return next((p for p in DEFAULT_PATHS if os.path.exists(p)), None)
