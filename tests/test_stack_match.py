"""The stack matcher on nmap's own DB (read at run time from Debian's nmap-common, never shipped):
a sanity test of the matcher, not a claim of field accuracy (issue 4)."""

from __future__ import annotations

import os
import random

import pytest

from hostprint.match.stack import StackMatcher, representative
from hostprint.signatures import nmap_os_db

DB = "/usr/share/nmap/nmap-os-db"


@pytest.fixture(scope="module")
def matcher():
    if not os.path.exists(DB):
        pytest.skip("nmap-os-db not installed (Debian nmap-common)")
    return StackMatcher(nmap_os_db.load(DB))


def test_right_class_first_for_95_percent_of_nmap_prints(matcher):
    random.seed(7)
    prints = matcher.db.prints
    sample = random.sample(range(len(prints)), 400)
    right = 0
    for i in sample:
        truth = prints[i]
        best = matcher.rank(representative(truth), top=1)[0].print
        want = {(c.vendor, c.family, c.generation, c.device_type) for c in truth.classes}
        got = {(c.vendor, c.family, c.generation, c.device_type) for c in best.classes}
        right += bool(want & got)
    assert right / len(sample) >= 0.95, right


@pytest.mark.parametrize("obs,expr,ok", [
    ("3C", "3B-45", True), ("46", "3B-45", False), ("1", "1|>1000000", True), ("2000000", "1|>1000000", True),
    ("5", "1|>1000000", False), ("", "", True), ("M5B4NW7", "M5B4NW7|M5B4", True), ("Z", "RI|RD", False),
    ("FE88", "FE88", True), ("4", "<5", True), ("5", "<5", False),
])
def test_expression_grammar(obs, expr, ok):
    assert nmap_os_db.expr_match(obs, expr) is ok


def test_vectorised_score_equals_plain_loop(matcher):
    """The compiled arrays must give nmap's earned/possible exactly, as a per-attribute loop does."""
    db = matcher.db
    obs = representative(db.prints[123])
    earned, possible = matcher.score(obs)
    for j in (0, 123, 999, len(db.prints) - 1):
        e = p = 0
        for test, attrs in obs.items():
            ref = db.prints[j].tests.get(test, {})
            for a, v in attrs.items():
                if a in ref:
                    w = db.weight(test, a)
                    p += w
                    e += w if nmap_os_db.expr_match(v, ref[a]) else 0
        assert (int(earned[j]), int(possible[j])) == (e, p)
