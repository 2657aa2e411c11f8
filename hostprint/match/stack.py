"""Match an observed stack fingerprint (nmap's SEQ/OPS/…/IE notation) against a reference DB.

Scoring is nmap's (osscan.cc, described in ../shared/reference/stack-fingerprinting.md §2.5): for
every attribute present in both the observation and a reference print, add the attribute's
MatchPoints to the possible total, and to the earned total when the observed value satisfies the
reference expression; accuracy = earned / possible. Unlike a per-print loop, every reference
expression is compiled once into flat numpy arrays of alternatives (literal / range / > / <) per
attribute, so one observation is scored against all ~5,700 nmap prints with one vectorised pass per
attribute (about 5 ms), which makes whole-DB self-checks and many hosts cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hostprint.model import Evidence, OsMatch, UnknownOs
from hostprint.signatures.nmap_os_db import Fingerprint, OsDb, Tests

LIT, RANGE, GT, LT, GLOB = 0, 1, 2, 3, 4
NO_NUM = -1


def _hex(v: str) -> int:
    try:
        return int(v, 16) if v else NO_NUM
    except ValueError:
        return NO_NUM


@dataclass
class _Attr:
    weight: int
    present: np.ndarray  # bool per print
    idx: np.ndarray  # print index per alternative
    kind: np.ndarray
    lo: np.ndarray  # int64
    hi: np.ndarray
    lit: np.ndarray  # object (str) per alternative
    globs: np.ndarray | None = None  # bool per alternative: a '*' pattern (hostprint DB)
    patterns: list[re.Pattern[str] | None] | None = None  # compiled regex per alternative


@dataclass
class Match:
    accuracy: float
    print: Fingerprint
    earned: int
    possible: int


class StackMatcher:
    def __init__(self, db: OsDb):
        self.db = db
        n = len(db.prints)
        self.attrs: dict[tuple[str, str], _Attr] = {}
        keys: dict[tuple[str, str], list[tuple[int, int, int, int, str]]] = {}
        present: dict[tuple[str, str], np.ndarray] = {}
        for i, fp in enumerate(db.prints):
            for test, attrs in fp.tests.items():
                for a, expr in attrs.items():
                    k = (test, a)
                    present.setdefault(k, np.zeros(n, bool))[i] = True
                    rows = keys.setdefault(k, [])
                    for alt in expr.split("|"):
                        if "*" in alt:  # hostprint DB only: "any value here" inside an option string
                            rows.append((i, GLOB, 0, 0, alt))
                        elif alt[:1] == ">" and _hex(alt[1:]) != NO_NUM:
                            rows.append((i, GT, _hex(alt[1:]), 0, alt))
                        elif alt[:1] == "<" and _hex(alt[1:]) != NO_NUM:
                            rows.append((i, LT, _hex(alt[1:]), 0, alt))
                        elif "-" in alt and all(_hex(x) != NO_NUM for x in alt.split("-", 1)):
                            lo, hi = alt.split("-", 1)
                            rows.append((i, RANGE, _hex(lo), _hex(hi), alt))
                        else:
                            rows.append((i, LIT, _hex(alt), 0, alt))
        for k, rows in keys.items():
            w = db.weight(*k)
            arr = np.array([r[:4] for r in rows], dtype=np.int64)
            at = _Attr(w, present[k], arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3],
                       np.array([r[4] for r in rows], dtype=object))
            if (arr[:, 1] == GLOB).any():
                at.globs = arr[:, 1] == GLOB
                at.patterns = [re.compile("[0-9A-F]+".join(map(re.escape, r[4].split("*")))) if r[1] == GLOB else None
                               for r in rows]
            self.attrs[k] = at

    def score(self, observed: Tests, informative: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(earned, possible) per reference print. With `informative`, attributes whose observed value
        at least that share of the prints that test it accept are left out: a value every class
        shares (a RST with ACK to a closed port's SYN) says nothing about which class this is."""
        n = len(self.db.prints)
        earned = np.zeros(n, np.int64)
        possible = np.zeros(n, np.int64)
        for test, attrs in observed.items():
            for a, val in attrs.items():
                at = self.attrs.get((test, a))
                if at is None or at.weight == 0:
                    continue
                possible += at.weight * at.present
                ov = _hex(val)
                hit = at.lit == val
                if at.globs is not None and at.patterns is not None:
                    hit |= at.globs & np.array([g is not None and g.fullmatch(val) is not None for g in at.patterns])
                if ov != NO_NUM:
                    hit |= ((at.kind == RANGE) & (at.lo <= ov) & (ov <= at.hi)) | ((at.kind == GT) & (ov > at.lo)) \
                        | ((at.kind == LT) & (ov < at.lo)) | ((at.kind == LIT) & (at.lo == ov))
                matched = np.zeros(n, bool)
                matched[at.idx[hit]] = True
                if informative is not None and at.present.any() and matched[at.present].mean() >= informative:
                    possible -= at.weight * at.present
                    continue
                earned += at.weight * matched
        return earned, possible

    def rank(self, observed: Tests, top: int = 10, threshold: float = 0.0) -> list[Match]:
        earned, possible = self.score(observed)
        acc = np.where(possible > 0, earned / np.maximum(possible, 1), 0.0)
        # ties go to the entry that checked more (the more specific class)
        order = np.lexsort((-possible, -acc))[:max(top, 1)]
        return [Match(float(acc[i]), self.db.prints[i], int(earned[i]), int(possible[i]))
                for i in order if acc[i] >= threshold]


def cached_matcher(db_path: str | None = None) -> StackMatcher:
    """A matcher for an installed DB, compiled once through the file cache (parsing and compiling
    nmap-os-db costs ~2 s, unpickling ~0.2 s)."""
    from hostprint.cache import from_file
    from hostprint.signatures import nmap_os_db

    path = db_path or nmap_os_db.default_path()
    if path is None:
        return StackMatcher(nmap_os_db.load(db_path))
    m = from_file(path, "osdb", lambda: StackMatcher(nmap_os_db.load(path)), version=2)
    return m if isinstance(m, StackMatcher) else StackMatcher(nmap_os_db.load(path))


def representative(fp: Fingerprint) -> Tests:
    """A concrete observation that a reference print describes: the first alternative of every
    expression, the low end of a range, one past a bound. Used to check the matcher on the DB."""
    out: Tests = {}
    for test, attrs in fp.tests.items():
        o: dict[str, str] = {}
        for a, expr in attrs.items():
            alt = expr.split("|")[0]
            if alt[:1] == ">" and _hex(alt[1:]) != NO_NUM:
                o[a] = "%X" % (_hex(alt[1:]) + 1)
            elif alt[:1] == "<" and _hex(alt[1:]) not in (NO_NUM, 0):
                o[a] = "%X" % (_hex(alt[1:]) - 1)
            elif "-" in alt and all(_hex(x) != NO_NUM for x in alt.split("-", 1)):
                o[a] = alt.split("-", 1)[0]
            else:
                o[a] = alt
        out[test] = o
    return out


# ---------------------------------------------------------------------------- classification

# Our DB's entries are classes, so a member should meet nearly all of an entry's attributes; below
# this accuracy the stack is called unknown and the nearest class is given with its distance.
UNKNOWN_BELOW = 0.85
NMAP_THRESHOLD = 0.85  # nmap prints: nmap's own cut-off for listing a match (osscan2.cc)
# A match must rest on more than a few attributes: 50 of nmap's points is just "R=N" lines.
MIN_POINTS = 500


# Distance = the share of *informative* points (attributes that fewer than 90 % of the classes accept
# for this observation) that the class misses. Plain accuracy is inflated by behaviour every stack
# shares (RFC 793 resets, ICMP quoting), so a stranger scores ~0.85 against some class of ours.
INFORMATIVE = 0.9
UNKNOWN_DISTANCE = 0.3


def _distance(m: StackMatcher, observed: Tests, best: Match) -> float:
    e, p = m.score(observed, informative=INFORMATIVE)
    i = m.db.prints.index(best.print)
    return float(1 - e[i] / p[i]) if p[i] > 0 else 0.0


def attr_match(observed: str, expr: str) -> bool:
    """One attribute against one reference expression, '*' patterns included."""
    from hostprint.signatures.nmap_os_db import expr_match

    if expr_match(observed, expr):
        return True
    return any("*" in alt and re.fullmatch("[0-9A-F]+".join(map(re.escape, alt.split("*"))), observed) for alt in expr.split("|"))


def disagreements(observed: Tests, fp: Fingerprint) -> list[str]:
    """What the observation says where the reference says otherwise: 'W1=1234 (class: FE88|FAF0)'."""
    out = []
    for test, attrs in observed.items():
        ref = fp.tests.get(test, {})
        for a, v in attrs.items():
            if a in ref and not attr_match(v, ref[a]):
                out.append(f"{test}.{a}={v} (class: {ref[a]})")
    return out


def _generation(fp: Fingerprint) -> str:
    """One range over an entry's Class lines of its first family: '11.X' … '14.X' -> '11.X-14.X'."""
    fam = fp.classes[0].family
    gens = list(dict.fromkeys(c.generation for c in fp.classes if c.family == fam and c.generation))
    if len(gens) <= 1:
        return gens[0] if gens else ""
    return f"{gens[0].split(' - ')[0]}-{gens[-1].split(' - ')[-1]}"


def _class_match(m: Match, db_label: str, penalty: float) -> OsMatch:
    c = m.print.classes[0]
    srcs = m.print.sources
    where = f"{db_label} {m.print.source + ' ' if m.print.source else ''}line {m.print.line}"
    types = "|".join(dict.fromkeys(k.device_type for k in m.print.classes if k.device_type))
    return OsMatch(name=m.print.name, family=c.family, vendor=c.vendor, generation=_generation(m.print),
                   device_type=types or c.device_type, confidence=round(m.accuracy * penalty, 3),
                   accuracy=round(m.accuracy, 3), db=db_label, cpe=list(m.print.cpes), line=m.print.line,
                   evidence=[Evidence("stack", f"{where}: {m.earned}/{m.possible} points"
                                      + (f"; {srcs[0].split(':', 1)[0]} class" if srcs else ""))])


@dataclass
class StackVerdict:
    matches: list[OsMatch]
    unknown: UnknownOs | None


def classify(observed: Tests, matchers: list[tuple[str, StackMatcher]], ideal: bool = True, top: int = 5) -> StackVerdict:
    """Matches from every selected DB, best first, plus an 'unknown' verdict for stacks that are far
    from every class of hostprint's own DB (the nearest class, its distance and the attributes that
    disagree). Confidence is the accuracy, lowered by a tenth when test conditions were not ideal
    (no open or closed port, no UDP answer), as nmap does."""
    penalty = 1.0 if ideal else 0.9
    matches: list[OsMatch] = []
    unknown = None
    for label, m in matchers:
        own = is_class_db(label)
        ranked = [r for r in m.rank(observed, top=top + 5) if r.possible >= (200 if own else MIN_POINTS)]
        if own:
            dist = _distance(m, observed, ranked[0]) if ranked else 1.0
            if ranked and (ranked[0].accuracy < UNKNOWN_BELOW or dist > UNKNOWN_DISTANCE):
                best = ranked[0]
                unknown = UnknownOs(nearest=best.print.name, family=best.print.classes[0].family,
                                    distance=round(dist, 3), accuracy=round(best.accuracy, 3),
                                    disagreements=disagreements(observed, best.print)[:12])
                continue
            ranked = [r for r in ranked if r.accuracy >= UNKNOWN_BELOW]
        else:
            ranked = [r for r in ranked if r.accuracy >= NMAP_THRESHOLD]
        matches.extend(_class_match(r, label, penalty) for r in ranked[:top])
    # our classes first when they tie with a print of another DB: they say where their facts come from
    matches.sort(key=lambda d: (-d.confidence, not is_class_db(d.db or "")))
    return StackVerdict(matches, unknown)


def is_class_db(label: str) -> bool:
    """Our class format (the shipped DB, or a user's file as 'hostprint:PATH'): classes, so the
    unknown verdict applies; nmap's prints are machines and keep nmap's own cut-off."""
    return label == "hostprint" or label.startswith("hostprint:")


def load_matchers6() -> list[tuple[str, StackMatcher]]:
    """-O over IPv6: hostprint's IPv6 class DB (signatures/stack6/) plus ~/.config/hostprint/stack6.txt.
    nmap keeps its IPv6 classifier compiled into the binary, and p0f's IPv6 signatures are passive:
    neither has a reference for these tests."""
    from hostprint.signatures import stack_db

    extra = [u] if (u := stack_db.user_file("stack6.txt")) else []
    return [("hostprint", StackMatcher(stack_db.load(stack_db.DB6_DIR, extra=extra)))]


def load_matchers(spec: str) -> list[tuple[str, StackMatcher]]:
    """--os-db: comma-separated 'hostprint' (ours, the default), 'nmap' (the installed nmap-os-db) or
    files (nmap-os-db format when they hold 'Fingerprint' entries, else ours). 'p0f' is handled by
    match/stack_p0f.py because p0f's SYN+ACK signatures are not in nmap's notation."""
    from hostprint.errors import UsageError
    from hostprint.signatures import stack_db

    out: list[tuple[str, StackMatcher]] = []
    for part in [x.strip() for x in spec.split(",") if x.strip()]:
        if part == "hostprint":
            extra = [u] if (u := stack_db.user_file()) else []
            out.append(("hostprint", StackMatcher(stack_db.load(extra=extra))))
        elif part == "nmap":
            out.append(("nmap", cached_matcher(None)))
        elif part == "p0f":
            continue
        else:
            try:
                with open(part, encoding="utf-8", errors="replace") as fh:
                    head = fh.read(1 << 20)
            except OSError:
                raise UsageError(f"--os-db: no such DB or file: {part!r} (use hostprint, nmap, p0f or a file)") from None
            if "\nFingerprint " in head or head.startswith("Fingerprint "):
                out.append((part, cached_matcher(part)))
            else:
                from hostprint.signatures.nmap_os_db import OsDb

                base = stack_db.load()
                prints = stack_db.parse(head, part)
                if not prints:
                    raise UsageError(f"--os-db: no Stack entries in {part!r}")
                out.append((f"hostprint:{part}", StackMatcher(OsDb(base.points, prints, part))))
    return out
