"""The combined host verdict from hand-built evidence of each kind."""

from __future__ import annotations

from hostprint.match import verdict
from hostprint.model import OsEvidence


def combine(os_: dict) -> list[dict]:
    """The combined matches for a stored `os` object, in their JSON form."""
    matches, _unknown = verdict.combine(OsEvidence.from_dict(os_))
    return [m.to_dict() for m in matches]


def test_stack_timing_and_banner_agree_on_one_family():
    os_ = {
        "stack": {"matches": [{"name": "Linux 5.3 - 5.4", "family": "Linux", "vendor": "Linux", "generation": "5.X",
                               "device_type": "general purpose", "confidence": 0.96, "cpe": ["cpe:/o:linux:linux_kernel:5"]},
                              {"name": "Linux 3.2", "family": "Linux", "confidence": 0.9}]},
        "timing": {"matches": [{"name": "Linux >= 3.1", "family": "Linux", "confidence": 0.8},
                               {"name": "FreeBSD 10", "family": "FreeBSD", "confidence": 0.1}]},
        "hints": [{"family": "Linux", "distribution": "Debian", "release": "12", "evidence": "OpenSSH_9.2p1 Debian-2+deb12u3",
                   "cpe": "cpe:/o:debian:debian_linux:12", "source": "22/tcp ssh banner"}],
    }
    m = combine(os_)
    assert [x["family"] for x in m] == ["Linux", "FreeBSD"]
    top = m[0]
    assert top["name"] == "Linux 5.3 - 5.4 (Debian 12)" and top["distribution"] == "Debian 12"
    assert top["methods"] == ["banner", "stack", "timing"]
    assert top["confidence"] > 0.95 > m[1]["confidence"]
    assert top["cpe"] == ["cpe:/o:linux:linux_kernel:5", "cpe:/o:debian:debian_linux:12"]
    assert {e["method"] for e in top["evidence"]} == {"stack", "timing", "banner"}


def test_more_independent_methods_raise_confidence():
    one = combine({"stack": {"matches": [{"name": "X", "family": "Linux", "confidence": 0.8}]}})[0]["confidence"]
    two = combine({"stack": {"matches": [{"name": "X", "family": "Linux", "confidence": 0.8}]},
                   "timing": {"matches": [{"name": "Y", "family": "Linux", "confidence": 0.8}]}})[0]["confidence"]
    assert two > one


def test_no_evidence_no_verdict():
    assert combine({}) == [] and combine({"timing": {"matches": []}, "hints": []}) == []


def _twins(ipids, ts=None, shapes=None):
    from hostprint.model import Twin

    return [Twin(f"LB{i}", (shapes or {}).get(i, "M5B4NW8ST11"), "2000", "80", "0", "Y",
                 None if ts is None else ts[i], 0.6 + 0.001 * i, ipid) for i, ipid in enumerate(ipids)]


def test_load_balancer_from_ip_id_counters():
    """Two Windows-like backends (incrementing IP IDs) behind one address: two counters. One host,
    random IDs or Linux's zero IDs must not be called a load balancer."""
    from hostprint.match.architecture import from_twins

    two = _twins([1000, 52000, 1001, 52001, 1003, 52002, 1004, 52004, 1005])
    [f] = from_twins(two, None)
    assert f.kind == "load-balancer" and "2 IP ID counters" in f.detail
    assert from_twins(_twins([1000, 1001, 1003, 1004, 1006, 1007, 1008, 1010, 1011]), None) == []
    assert from_twins(_twins([17, 40000, 9000, 61234, 30000, 5, 45000, 22222, 60001]), None) == []
    assert from_twins(_twins([0] * 9), None) == []


def test_load_balancer_from_stack_shapes_and_clocks():
    from hostprint.match.architecture import from_twins

    mixed = _twins([0] * 9, shapes={1: "M5B4", 3: "M5B4", 5: "M5B4"})
    [f] = from_twins(mixed, None)
    assert "2 different stacks" in f.detail
    # two host-wide 1 kHz clocks far apart vs one clock
    ts2 = [1_000_000 + i if i % 2 else 9_000_000 + i for i in range(9)]
    [f] = from_twins(_twins([0] * 9, ts=ts2), 1000.0)
    assert "2 TCP timestamp clocks" in f.detail
    assert from_twins(_twins([0] * 9, ts=[1_000_000 + i for i in range(9)]), 1000.0) == []
    # per-connection random offsets: every answer its own clock -> no claim
    rnd = [123456789 * (i + 1) % (1 << 32) for i in range(9)]
    assert from_twins(_twins([0] * 9, ts=rnd), 1000.0) == []


PASSIVE_LINUX = {"matches": [{"name": "Linux 3.11 and newer", "family": "Linux", "confidence": 0.9}],
                 "uptime": None, "nat": {"suspected": False, "reasons": []}}
STACK_LINUX = {"matches": [{"name": "Linux 4.x - 6.x", "family": "Linux", "generation": "4.x-6.x", "confidence": 0.9,
                            "db": "hostprint"}]}


def test_passive_evidence_alone_gives_a_verdict():
    m = combine({"passive": PASSIVE_LINUX})
    assert [(x["family"], x["methods"]) for x in m] == [("Linux", ["passive"])]
    # a passive block as hostprint wrote it before the typed model (os.passive.os) reads the same
    old = {"passive": {"os": PASSIVE_LINUX["matches"][0], "nat": PASSIVE_LINUX["nat"]}}
    assert combine(old)[0]["name"] == m[0]["name"]


def test_passive_agreeing_with_stack_raises_confidence():
    alone = combine({"stack": STACK_LINUX})[0]
    both = combine({"stack": STACK_LINUX, "passive": PASSIVE_LINUX})[0]
    assert both["methods"] == ["passive", "stack"] and both["confidence"] > alone["confidence"]
    assert both["name"] == "Linux 4.x - 6.x"  # the probing technique's class is the more specific name


def test_a_stack_no_class_fits_is_not_named_by_timing():
    """Issue 15's user-space stack: the stack probes say unknown (nearest Linux at 0.46), timing
    names a Linux class: the host is unknown, nearest Linux, with the timing claim as evidence."""
    ev = OsEvidence.from_dict({
        "stack": {"matches": [], "unknown": {"nearest": "Linux 4.x - 6.x", "family": "Linux", "distance": 0.46}},
        "timing": {"outcome": "match", "matches": [{"name": "Linux 3.1 and later, 4 SYN-ACK retransmissions (tuned)",
                                                    "family": "Linux", "confidence": 0.74}]}})
    matches, unknown = verdict.combine(ev)
    assert matches == [] and unknown is not None and unknown.nearest == "Linux 4.x - 6.x"
    assert {e.method for e in unknown.evidence} == {"stack", "timing"} and unknown.distance == 0.46


def test_techniques_naming_different_families_are_a_stack_outside_the_dbs():
    ev = OsEvidence.from_dict({
        "stack": {"matches": [{"name": "VxWorks 6.x", "family": "VxWorks", "confidence": 0.8}]},
        "timing": {"matches": [{"name": "Linux 2.4 - 3.0", "family": "Linux", "confidence": 0.85}]}})
    matches, unknown = verdict.combine(ev)
    assert matches == [] and unknown is not None and "disagree" in (unknown.reason or "")
    assert {e.method for e in unknown.evidence} == {"stack", "timing"}
    # a weak runner-up of another family is not disagreement
    ev.blocks["timing"].matches[0].confidence = 0.2
    matches, unknown = verdict.combine(ev)
    assert unknown is None and matches[0].family == "VxWorks"


def test_a_technique_that_finds_no_class_lowers_the_others_confidence():
    base = combine({"stack": STACK_LINUX})[0]["confidence"]
    ev = {"stack": STACK_LINUX, "timing": {"outcome": "unknown", "matches": [],
                                           "unknown": {"nearest": "Linux 3.1 and later", "distance": {"missing_packets": 2}}}}
    m = combine(ev)[0]
    assert m["confidence"] < base and any(e["method"] == "timing" for e in m["evidence"])


def test_os_evidence_round_trips_through_json():
    ev = OsEvidence.from_dict({"stack": {**STACK_LINUX, "tests": {"SEQ": {"TI": "Z"}}, "summary": {"df": True}},
                               "passive": PASSIVE_LINUX, "architecture": [{"kind": "nat", "detail": "x"}],
                               "hints": [{"family": "Linux", "distribution": "Debian", "release": "12"}],
                               "some_future_key": {"a": 1}})
    verdict.apply(ev)
    again = OsEvidence.from_dict(ev.to_dict())
    assert again == ev and again.to_dict()["some_future_key"] == {"a": 1}


def test_timing_outcomes_reach_the_verdict_as_the_matcher_meant_them():
    """Timing's posterior is one distribution: tied classes of a family add up; a listen limit
    that cannot separate classes vouches for the family only; a generic (RFC default) schedule
    names nothing but is said."""
    tied = {"timing": {"outcome": "ambiguous", "matches": [
        {"name": "Linux 3.1 and later", "family": "Linux", "confidence": 0.3},
        {"name": "Linux 3.1 and later, 4 SYN-ACK retransmissions (tuned)", "family": "Linux", "confidence": 0.3},
        {"name": "Linux 3.1 and later, 6 SYN-ACK retransmissions (tuned)", "family": "Linux", "confidence": 0.3}],
        "listen_limit_s": 20, "censored_ambiguous": ["Linux 3.1 and later",
                                                    "Linux 3.1 and later, 4 SYN-ACK retransmissions (tuned)"]}}
    m = combine(tied)[0]
    one = combine({"timing": {"matches": [{"name": "Linux 3.1 and later", "family": "Linux", "confidence": 0.3}]}})[0]
    assert m["confidence"] > one["confidence"] and m["name"] == "Linux"
    assert any("cannot separate" in e["detail"] for e in m["evidence"])
    generic = OsEvidence.from_dict({"timing": {"outcome": "generic", "matches": [],
                                               "generic": {"reason": "RFC 6298 default schedule", "consistent": ["X"]}}})
    matches, unknown = verdict.combine(generic)
    assert matches == [] and unknown is not None and "RFC 6298" in unknown.evidence[0].detail
    # beside a stack match, the generic schedule is shown and costs nothing
    both = OsEvidence.from_dict({**generic.to_dict(), "stack": STACK_LINUX})
    matches, unknown = verdict.combine(both)
    assert unknown is None and matches[0].confidence == combine({"stack": STACK_LINUX})[0]["confidence"]
    assert any("RFC 6298" in e.detail for e in matches[0].evidence)


def test_stack_confidence_is_calibrated_on_held_out_prints():
    """A stack class matched at full accuracy was right 99 % of the time on nmap-os-db's held-out
    prints (signatures/knowledge/calibration.txt): the verdict says so instead of its raw 0.9."""
    from hostprint.signatures.knowledge import calibrations

    cal = calibrations()["stack"]
    assert cal(0.9) == 0.99 and cal(0.5) == 0.5 and cal(0.8) <= cal(0.85) <= cal(0.9)
    full = combine({"stack": {"matches": [{"name": "Linux 6.x", "family": "Linux", "confidence": 1.0}]}})[0]
    assert full["confidence"] == 0.99
