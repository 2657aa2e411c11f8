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

from dataclasses import dataclass

import numpy as np

from hostprint.signatures.nmap_os_db import Fingerprint, OsDb, Tests

LIT, RANGE, GT, LT = 0, 1, 2, 3
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
                        if alt[:1] == ">" and _hex(alt[1:]) != NO_NUM:
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
            self.attrs[k] = _Attr(w, present[k], arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3],
                                  np.array([r[4] for r in rows], dtype=object))

    def score(self, observed: Tests) -> tuple[np.ndarray, np.ndarray]:
        """(earned, possible) per reference print."""
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
                if ov != NO_NUM:
                    hit |= ((at.kind == RANGE) & (at.lo <= ov) & (ov <= at.hi)) | ((at.kind == GT) & (ov > at.lo)) \
                        | ((at.kind == LT) & (ov < at.lo)) | ((at.kind == LIT) & (at.lo == ov))
                matched = np.zeros(n, bool)
                matched[at.idx[hit]] = True
                earned += at.weight * matched
        return earned, possible

    def rank(self, observed: Tests, top: int = 10, threshold: float = 0.0) -> list[Match]:
        earned, possible = self.score(observed)
        acc = np.where(possible > 0, earned / np.maximum(possible, 1), 0.0)
        order = np.argsort(-acc, kind="stable")[:max(top, 1)]
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
    m = from_file(path, "osdb", lambda: StackMatcher(nmap_os_db.load(path)))
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
