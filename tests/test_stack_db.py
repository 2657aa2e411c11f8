"""hostprint's own stack DB: the reader's rules, the '*' option patterns, the shipped entries, and a
sanity check of the classes against nmap's measured prints (when nmap-os-db is installed)."""

from __future__ import annotations

import collections
import os

import pytest

from hostprint.errors import UsageError
from hostprint.match.stack import StackMatcher, attr_match, classify, load_matchers, representative
from hostprint.signatures import nmap_os_db, stack_db

NMAP_DB = "/usr/share/nmap/nmap-os-db"

ENTRY = """Stack Test stack
Class Acme | AcmeOS | 1.x | router
Source measured: made up for this test
OPS(O1=M*NW*|M*)
T1(R=Y%F=AS%S=O%A=S+)
T5(R=Y%F=AR)
"""


def test_shipped_entries_all_say_where_they_come_from():
    db = stack_db.load()
    assert len(db.prints) >= 20
    for fp in db.prints:
        assert fp.classes and fp.sources, fp.name
        assert all(s.split(":", 1)[0] in ("documented", "measured") for s in fp.sources)
    fams = {fp.classes[0].family for fp in db.prints}
    # the families the issue lists (names as the entries spell them)
    for f in ("Linux", "Windows", "FreeBSD", "OpenBSD", "NetBSD", "macOS", "Solaris", "IOS", "JUNOS", "lwIP",
              "gVisor", "libslirp", "pasta", "netfilter SYNPROXY"):
        assert f in fams, f


@pytest.mark.parametrize("text, err", [
    (ENTRY.replace("Source measured: made up for this test\n", ""), "no Source line"),
    (ENTRY.replace("Class Acme | AcmeOS | 1.x | router\n", ""), "no Class line"),
    (ENTRY.replace("Class Acme | AcmeOS | 1.x | router", "Class Acme"), "Class needs"),
    (ENTRY.replace("Source measured:", "Source guessed:"), "Source must start"),
    (ENTRY.replace("T5(R=Y%F=AR)", "T9(R=Y)"), "unknown test 'T9'"),
    (ENTRY.replace("F=AR", "F=A R"), "bad expression"),
    ("OPS(O1=M5B4)\n", "outside a Stack entry"),
])
def test_reader_errors_name_file_line_and_token(text, err):
    with pytest.raises(UsageError, match=err) as e:
        stack_db.parse(text, "mine.txt")
    assert "mine.txt:" in str(e.value)


def test_star_patterns_match_any_value_inside_an_option_string():
    assert attr_match("M5B4ST11NWA", "M*ST11NW*")
    assert attr_match("M218NW7", "M*NW*|M*")
    assert not attr_match("M5B4ST11NWA", "M*NNT11NW*")
    assert not attr_match("NNT11M5B4", "M*")
    fps = stack_db.parse(ENTRY, "mine.txt")
    base = stack_db.load()
    m = StackMatcher(nmap_os_db.OsDb(base.points, fps, "t"))
    ok = m.rank({"OPS": {"O1": "M5B4NW7"}, "T5": {"R": "Y", "F": "AR"}})[0]
    bad = m.rank({"OPS": {"O1": "NNT11"}, "T5": {"R": "Y", "F": "AR"}})[0]
    assert ok.accuracy == 1.0 and bad.accuracy < 1.0


def test_user_entries_load_from_the_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / ".config" / "hostprint"
    cfg.mkdir(parents=True)
    (cfg / "stack.txt").write_text(ENTRY)
    monkeypatch.setenv("HOME", str(tmp_path))
    [(label, m)] = load_matchers("hostprint")
    assert label == "hostprint" and any(fp.name == "Test stack" for fp in m.db.prints)
    (cfg / "stack.txt").write_text(ENTRY.replace("Source measured: made up for this test\n", ""))
    with pytest.raises(UsageError, match="stack.txt"):
        load_matchers("hostprint")


def test_own_format_file_as_os_db(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text(ENTRY)
    [(label, m)] = load_matchers(str(f))
    assert label == f"hostprint:{f}" and [fp.name for fp in m.db.prints] == ["Test stack"]
    # a file of our format gets the class rules: far from its only class -> unknown, not a weak match
    v = classify({"OPS": {"O1": "NNT11"}, "T1": {"R": "Y", "F": "AR", "S": "Z", "A": "Z"}, "T5": {"R": "N"}},
                 [(label, m)])
    assert v.matches == [] and v.unknown.nearest == "Test stack"
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UsageError, match="no Stack entries"):
        load_matchers(str(tmp_path / "empty.txt"))


def _family(name: str) -> str:
    n = name.lower()
    return {"mac os x": "apple", "macos": "apple", "os x": "apple", "iphone os": "apple"}.get(n, n)


@pytest.mark.skipif(not os.path.exists(NMAP_DB), reason="nmap-os-db not installed")
def test_classes_against_nmaps_measured_prints():
    """Every nmap print of a family our DB covers, turned into an observation: our best class must be
    of the right family for most of them (a sanity check of class breadth and overlap, not a field
    accuracy claim), and with that family's classes removed, most must come out as unknown."""
    ndb = nmap_os_db.load(NMAP_DB)
    ours = stack_db.load()
    fams = {_family(fp.classes[0].family) for fp in ours.prints}
    full = StackMatcher(ours)
    without = {f: StackMatcher(nmap_os_db.OsDb(ours.points, [fp for fp in ours.prints
                                                             if _family(fp.classes[0].family) != f], "t"))
               for f in fams}
    right = collections.Counter()
    total = collections.Counter()
    unknown_ok = tried = 0
    for fp in ndb.prints[::3]:
        if not fp.classes:
            continue
        # Apple's iOS and Cisco's IOS share a family name in nmap's DB: go by vendor for Apple
        f = "apple" if fp.classes[0].vendor == "Apple" else _family(fp.classes[0].family)
        if f not in fams:
            continue
        obs = representative(fp)
        v = classify(obs, [("hostprint", full)])
        total[f] += 1
        best = v.matches[0] if v.matches else None
        if best and ("apple" if best.vendor == "Apple" else _family(best.family)) == f:
            right[f] += 1
        if f in ("linux", "windows", "freebsd", "openbsd", "ios"):
            tried += 1
            w = classify(obs, [("hostprint", without[f])])
            unknown_ok += not w.matches or w.unknown is not None
    overall = sum(right.values()) / sum(total.values())
    per = {f: round(right[f] / total[f], 2) for f in total}
    assert overall >= 0.85, per
    assert all(v >= 0.6 for f, v in per.items() if total[f] >= 10), per
    assert unknown_ok / tried >= 0.7, unknown_ok / tried
