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
