"""The combined host verdict from hand-built evidence of each kind."""

from __future__ import annotations

from hostprint.match.verdict import combine


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
    return [{"probe": f"LB{i}", "O": (shapes or {}).get(i, "M5B4NW8ST11"), "W": "2000", "TG": "80", "hops": "0",
             "DF": "Y", "ts": None if ts is None else ts[i], "at": 0.6 + 0.001 * i, "ipid": ipid}
            for i, ipid in enumerate(ipids)]


def test_load_balancer_from_ip_id_counters():
    """Two Windows-like backends (incrementing IP IDs) behind one address: two counters. One host,
    random IDs or Linux's zero IDs must not be called a load balancer."""
    from hostprint.match.architecture import from_twins

    two = _twins([1000, 52000, 1001, 52001, 1003, 52002, 1004, 52004, 1005])
    [f] = from_twins(two, None)
    assert f["kind"] == "load-balancer" and "2 IP ID counters" in f["detail"]
    assert from_twins(_twins([1000, 1001, 1003, 1004, 1006, 1007, 1008, 1010, 1011]), None) == []
    assert from_twins(_twins([17, 40000, 9000, 61234, 30000, 5, 45000, 22222, 60001]), None) == []
    assert from_twins(_twins([0] * 9), None) == []


def test_load_balancer_from_stack_shapes_and_clocks():
    from hostprint.match.architecture import from_twins

    mixed = _twins([0] * 9, shapes={1: "M5B4", 3: "M5B4", 5: "M5B4"})
    [f] = from_twins(mixed, None)
    assert "2 different stacks" in f["detail"]
    # two host-wide 1 kHz clocks far apart vs one clock
    ts2 = [1_000_000 + i if i % 2 else 9_000_000 + i for i in range(9)]
    [f] = from_twins(_twins([0] * 9, ts=ts2), 1000.0)
    assert "2 TCP timestamp clocks" in f["detail"]
    assert from_twins(_twins([0] * 9, ts=[1_000_000 + i for i in range(9)]), 1000.0) == []
    # per-connection random offsets: every answer its own clock -> no claim
    rnd = [123456789 * (i + 1) % (1 << 32) for i in range(9)]
    assert from_twins(_twins([0] * 9, ts=rnd), 1000.0) == []
