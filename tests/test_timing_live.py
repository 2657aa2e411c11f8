"""Live Cron-OS timing tests against real Linux stacks in namespaces.

One `hostprint timing` run measures every host at once (which is also what the product promises:
the protocol, not the tool, sets the pace), then each test asserts on its host. Schedules are
shortened with per-namespace sysctls where the assertion allows it:
  tcp_synack_retries=2  -> SYN-ACKs at 0, 1, 3 s, then the request is dropped silently
  tcp_orphan_retries=3  -> the orphaned LAST_ACK/FIN_WAIT1 socket gives up after ~3 s of
                           retransmissions (time-based limit, net/ipv4/tcp_timer.c)
Measured on Linux 6.18 here (see bench/RESULTS.md "Timing probes (live)").
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import hostprint, needs_root
from hostprint.lab.stacks import SYNPROXY_RULES as SYNPROXY
from hostprint.lab.stacks import build_lwip as _build_lwip

pytestmark = pytest.mark.lab

TUNED = {"net.ipv4.tcp_synack_retries": "2", "net.ipv4.tcp_orphan_retries": "3"}
LIN, TUN, TUN3, CK, DL, BEHIND, MANY = ("198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13",
                                        "198.18.0.14", "198.19.0.10", "198.18.0.30")
MANY_EXTRA = [f"198.18.1.{i}" for i in range(1, 100)]
LWIP = "198.18.0.50"  # lwIP on a tap device in host "lwh" (198.18.0.51), which routes to it


def _spec(name: str):
    from hostprint.lab import HostSpec, LabSpec

    return LabSpec(name=name, hosts=[
        HostSpec(name="lin", address=LIN, services=["nginx:80"]),
        HostSpec(name="tun", address=TUN, services=["nginx:80", "redis:6379"], sysctls=TUNED),
        HostSpec(name="tun3", address=TUN3, services=["nginx:80"],
                 sysctls={"net.ipv4.tcp_synack_retries": "3", "net.ipv4.tcp_orphan_retries": "3",
                          "net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0"}),
        HostSpec(name="ck", address=CK, services=["nginx:80"], sysctls={**TUNED, "net.ipv4.tcp_syncookies": "2"}),
        HostSpec(name="dl", address=DL, services=["nginx:80"], sysctls=TUNED, delay_relay=True),
        HostSpec(name="many", address=MANY, extra_addresses=MANY_EXTRA, services=["nginx:80"], sysctls=TUNED),
        HostSpec(name="r", address="198.18.0.2", router=True),
        HostSpec(name="b", address=BEHIND, segment=2, services=["nginx:80"], sysctls=TUNED),
        HostSpec(name="lwh", address="198.18.0.51",
                 sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1"}),
    ])


def _start_lwip(lab, binary: str) -> None:
    from hostprint.lab.stacks import start_lwip

    start_lwip(lab, binary, "lwh", LWIP)


@pytest.fixture(scope="module")
def tlab():
    needs_root()
    import shutil

    if not shutil.which("iptables"):
        pytest.skip("needs iptables (SYNPROXY target)")
    import tempfile

    from hostprint.lab import Lab

    with tempfile.TemporaryDirectory(prefix="hpt-lwip-") as tmp, Lab(_spec(f"tm{os.getpid() % 10000}")) as lab:
        for argv in SYNPROXY:
            lab.exec("r", argv, check=True, capture_output=True)
        lab.lwip = _build_lwip(tmp)
        if lab.lwip:
            _start_lwip(lab, lab.lwip)
        yield lab


def _timing(lab, *args: str) -> dict[str, dict]:
    r = hostprint(lab, "timing", *args, "-oJ", "-")
    return {d["address"]: d for d in map(json.loads, r.stdout.splitlines()) if d}


@pytest.fixture(scope="module")
def measured(tlab):
    """One run, every host, all three tests (default Linux needs ~31 s for its 6 SYN-ACKs)."""
    lw = [LWIP] if tlab.lwip else []
    return _timing(tlab, LIN, TUN, TUN3, CK, DL, BEHIND, *lw, "-p", "80", "--tests", "slf", "--cron-timeout", "40")


def _test(host: dict, name: str) -> dict:
    (t,) = [t for t in host["os"]["timing"]["tests"] if t["test"] == name]
    return t


def _gaps(t: dict) -> list[float]:
    return list(np.diff(t["arrivals"]))


def _best(host: dict) -> str | None:
    m = host["os"]["timing"]["matches"]
    return m[0]["id"] if m else None


def _assert_doubling(gaps: list[float], first: float = 1.0) -> None:
    """Linux's SYN-ACK timer: 1 s initial RTO doubled per retransmission (TCP_TIMEOUT_INIT, ×2),
    late by at most the timer wheel's 12.5 % (Linux >= 4.8) plus scheduling noise."""
    for i, g in enumerate(gaps):
        want = first * 2 ** i
        assert want - 0.01 <= g <= want * 1.13 + 0.05, (i, g, gaps)


def test_default_linux_schedule(measured):
    h = measured[LIN]
    s = _test(h, "syn")
    assert s["status"] == "ok" and s["rst"] is None
    assert len(s["arrivals"]) == 6  # tcp_synack_retries default 5 + the first SYN-ACK
    _assert_doubling(_gaps(s))
    assert s["rtt_us"] is not None and 0 < s["rtt_us"] < 50_000
    assert s["signature"].startswith("CronOS_Syn(nbPkt=5%")
    assert s["synack"]["ttl"] == 64 and s["synack"]["options"] == "MSTNW"
    assert _best(h) == "linux-3.1+"
    assert h["os"]["architecture"] == []
    # the Cron-OS lines travel in the fingerprint that XML / normal output print
    assert "CronOS_Syn(nbPkt=5" in h["os"]["fingerprint"]
    # listening 40 s cannot tell the default from 6 retries (whose 7th SYN-ACK is due at ~63 s):
    # both stay equally likely and the report says so
    tm = h["os"]["timing"]
    assert s["stopped"] == "timeout" and 39 <= tm["listen_limit_s"] <= 42
    assert {"Linux 3.1 and later", "Linux 3.1 and later, 6 SYN-ACK retransmissions (tuned)"} <= \
        set(tm["censored_ambiguous"])
    assert "Linux 3.1 and later, 4 SYN-ACK retransmissions (tuned)" not in tm["censored_ambiguous"]


def test_tuned_linux_schedule_and_verdict(measured):
    h = measured[TUN]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 3  # tcp_synack_retries=2
    _assert_doubling(_gaps(s))
    assert s["stopped"] == "early" and s["listened_s"] < 40  # decided before the listen limit
    assert _best(h) == "linux-3.1+-synack2"
    # orphaned LAST_ACK / FIN_WAIT1: first retransmission after TCP_RTO_MIN (200 ms) on a LAN
    for name in ("lastack", "finwait"):
        t = _test(h, name)
        assert t["status"] == "ok" and len(t["arrivals"]) >= 3, t
        g = _gaps(t)
        assert 0.19 <= g[0] <= 0.4, g
        assert g[-1] > g[0] * 3  # backs off


def test_tuned_ttl_and_options(measured):
    """TTL 128 and no timestamps hide Linux's header. With the connection tests, Linux's 200-ms RTO
    floor still names the family; the SYN_RCVD test alone is 1 s doubling with 3 retries, the RFC
    6298 default schedule, which names no OS by itself: "generic", consistent with Linux's 3-retry class."""
    from hostprint.match.timing import TimingClassifier, TimingObservation
    from hostprint.signatures.timing_db import resolve_timing_db

    h = measured[TUN3]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 4  # tcp_synack_retries=3
    _assert_doubling(_gaps(s))
    assert s["synack"]["ttl"] == 128
    assert "T" not in s["synack"]["options"]  # tcp_timestamps=0
    assert h["os"]["timing"]["matches"][0]["family"] == "Linux", h["os"]["timing"]["lines"]
    syn_only = TimingObservation(arrivals=s["arrivals"], rtt=s["rtt_us"] / 1e6, listen_s=s["listened_s"],
                                 **s["synack"])
    v = TimingClassifier(resolve_timing_db("hostprint")).classify_host([syn_only])
    assert v.outcome == "generic" and v.best is None, v.to_dict()
    assert v.generic["initial_rto_s"] == 1.0 and "linux-3.1+-synack3" in v.generic["consistent"]


def test_syn_cookies_forced(measured):
    """tcp_syncookies=2: every SYN gets a stateless cookie SYN-ACK, so nothing is retransmitted;
    the connection tests still see the host's own retransmissions."""
    h = measured[CK]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 1 and s["rst"] is None
    assert s["listened_s"] >= 3
    assert len(_test(h, "lastack")["arrivals"]) >= 3
    (a,) = h["os"]["architecture"]
    assert a["kind"] == "syn-cookie"


def test_synproxy_relay(measured):
    """iptables SYNPROXY on the router answers the SYN (TTL 64, never retransmitted); the host
    behind sends its own FINs (TTL 63 after one hop) with Linux's schedule."""
    h = measured[BEHIND]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 1 and s["synack"]["ttl"] == 64
    la = _test(h, "lastack")
    assert la["segment_ttl"] == 63 and len(la["arrivals"]) >= 3
    (a,) = h["os"]["architecture"]
    assert a["kind"] == "syn-relay"
    assert "host behind: Linux" in a["detail"]


def test_loss_and_delay_do_not_flip_verdict(tlab, measured):
    clean = _best(measured[DL])
    assert clean == "linux-3.1+-synack2"
    tlab.set_loss("dl", 2)
    tlab.set_delay("dl", 20, 10)
    try:
        got = _timing(tlab, DL, "-p", "80", "--tests", "slf", "--cron-timeout", "30")[DL]
    finally:
        tlab.set_loss("dl", 0)
        tlab.set_delay("dl", 0, 0)
    s = _test(got, "syn")
    assert s["rtt_us"] is None or s["rtt_us"] >= 40_000  # the delay really was there
    tm = got["os"]["timing"]
    why = (tm["lines"], [(t["test"], t["arrivals"]) for t in tm["tests"]])
    if len(s["arrivals"]) == 3:
        assert _best(got) == clean, why
    else:
        # a SYN-ACK lost to the 2 % loss (1 run in ~12 here): the early stop ends the test when the
        # next one is overdue, so the tuned and the default schedules each need one loss to explain
        # it - a tie, said as one, with the true class among the tied; never a confident other class
        assert tm["outcome"] == "ambiguous" and tm["matches"][0]["confidence"] < 0.5, why
        top = tm["matches"][0]["confidence"]
        assert clean in {m["id"] for m in tm["matches"] if m["confidence"] >= top - 1e-6}, why


@pytest.fixture(scope="module")
def twenty(tlab):
    """One 20-s SYN_RCVD run: 100 addresses of one tuned kernel, and the default Linux host."""
    return _timing(tlab, MANY, *MANY_EXTRA, LIN, "-p", "80", "--tests", "s", "--cron-timeout", "20")


def test_hundred_addresses_one_run(twenty):
    """100 addresses of one kernel in one event loop: every one measured and classified."""
    addrs = [MANY, *MANY_EXTRA]
    got = twenty
    assert set(addrs) <= set(got)
    for a in addrs:
        s = _test(got[a], "syn")
        assert len(s["arrivals"]) == 3, (a, s)
        assert _best(got[a]) == "linux-3.1+-synack2", a


def test_listen_limit_keeps_default_and_tuned_alike(twenty):
    """Linux defaults (SYN-ACKs at 0, 1, 3, 7, 15, 31 s) heard for 20 s show five packets: the
    default, 4 and 6 retries cannot be told apart (their next packets are due after 20 s), so none of
    them may win, and the report names them and the limit."""
    h = twenty[LIN]
    tm = h["os"]["timing"]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 5 and s["stopped"] == "timeout", s
    assert tm["outcome"] == "ambiguous", tm["lines"]
    assert tm["matches"][0]["confidence"] < 0.5
    ids = {m["id"] for m in tm["matches"]}
    assert {"linux-3.1+", "linux-3.1+-synack4", "linux-3.1+-synack6"} <= ids
    assert {"Linux 3.1 and later", "Linux 3.1 and later, 4 SYN-ACK retransmissions (tuned)",
            "Linux 3.1 and later, 6 SYN-ACK retransmissions (tuned)"} <= set(tm["censored_ambiguous"])
    assert 19 <= tm["listen_limit_s"] <= 22
    assert any("cannot separate" in ln and "Listen limit 20 s" in ln for ln in tm["lines"]), tm["lines"]


LEARN = ("import sys, hostprint.cli as c\n"
         "if 'learn' not in c.COMMANDS: c.COMMANDS.append('learn')\n"
         "raise SystemExit(c.main(sys.argv[1:]))")


def test_learn_then_classify(tlab, tmp_path):
    """`learn` records the tuned host; with only that class, the same host matches it and a host
    with another schedule (4 SYN-ACKs, TTL 128) is reported as an unknown stack, not forced."""
    import sys

    db = tmp_path / "learned.txt"
    r = tlab.exec(tlab.scanner_ns, [sys.executable, "-c", LEARN, "learn", TUN, "-p", "80", "--label",
                                    "Linux lab tuned", "--cron-timeout", "12", "--timing-db-out", str(db)],
                  capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = db.read_text()
    assert "Fingerprint Linux lab tuned" in text and "CronOS_Syn(nbPkt=2%" in text
    assert "measured here" in text
    got = _timing(tlab, TUN, TUN3, "-p", "80", "--cron-timeout", "12", "--timing-db", str(db))
    assert _best(got[TUN]) == "linux-lab-tuned", (text, got[TUN]["os"]["timing"])
    assert got[TUN3]["os"]["timing"]["outcome"] == "unknown"
    assert got[TUN3]["os"]["timing"]["matches"] == []
    assert got[TUN3]["os"]["timing"]["unknown"]["nearest"] == "Linux lab tuned"


def test_learn_stopped_keeps_the_measurement_and_appends_nothing(tlab, tmp_path):
    """Ctrl-C inside `learn`: a class from schedules cut short would be wrong, so the DB is not
    touched; the tests as far as they got are saved beside it and the one line says where."""
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "learned.txt"
    p = tlab.spawn(tlab.scanner_ns, [sys.executable, "-c", LEARN, "learn", TUN, "-p", "80", "--label", "cut",
                                     "--tests", "s", "--cron-timeout", "30", "--timing-db-out", str(db)],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # the tuned host's SYN-ACKs come at 0, 1 and 3 s
    os.kill(p.pid, signal.SIGINT)
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert f"nothing appended to {db}" in err and not db.exists(), err
    (kept,) = tmp_path.glob("learned.txt.interrupted-*.jsonl")
    assert str(kept) in err
    tests = [json.loads(ln) for ln in kept.read_text().splitlines()]
    assert tests and all(t["test"] == "syn" for t in tests)
    assert any(len(t["arrivals"]) >= 1 for t in tests), tests


def test_bad_input_is_one_line(tlab):
    for args, token in ((["--tests", "sx"], "'x'"), (["--cron-timeout", "999"], "999"), ([], "-p")):
        r = hostprint(tlab, "timing", TUN, *args, check=False)
        assert r.returncode == 2 and token in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_scan_cron_os_phase(tlab, tmp_path):
    """`scan --cron-os` runs the tests on an open port after the port scan; JSON carries
    os.timing / os.architecture, XML and normal output carry the Cron-OS lines."""
    xml = tmp_path / "out.xml"
    r = hostprint(tlab, "scan", TUN, BEHIND, "-p", "22,80", "--cron-os", "sl", "--cron-timeout", "15",
                  "-oJ", "-", "-oX", str(xml), "--no-db", "--progress", "never")
    hosts = {d["address"]: d for d in map(json.loads, r.stdout.splitlines()) if d}
    tun = hosts[TUN]["os"]
    assert [t["test"] for t in tun["timing"]["tests"]] == ["syn", "lastack"]
    assert tun["timing"]["tests"][0]["port"] == 80
    assert tun["timing"]["matches"][0]["id"] == "linux-3.1+-synack2"
    assert hosts[BEHIND]["os"]["architecture"][0]["kind"] == "syn-relay"
    assert "CronOS_Syn(nbPkt=2%" in xml.read_text()


def test_lwip(tlab, measured):
    """lwIP 2.1 (Debian liblwip-dev) in user space: SYN-ACK after its 3 s initial RTO counted in
    500-ms slow-timer ticks, then 6 s (shift 1), then the SYN_RCVD pcb is dropped silently at 20 s
    (lwip tcp.c / tcp_priv.h, reference notes §3.8)."""
    if not tlab.lwip:
        pytest.skip("needs Debian liblwip-dev and a C compiler (lwIP test server)")
    h = measured[LWIP]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 3 and s["rst"] is None, s
    g = _gaps(s)
    # measured 2.21-2.78, 6.00; 1.995 once in a loaded CI run: when lwIP's tcpip thread is held
    # up, it sends the SYN-ACK before running the overdue 500-ms ticks, which then count at once
    # (timing.txt's lwIP entry). The DB's range (2.0-3.6 s) plus jitter still names lwIP at 1.9 s
    assert 1.9 <= g[0] <= 3.6 and 5.4 <= g[1] <= 6.6, g
    assert _best(h) == "lwip", (h["os"]["timing"]["lines"], [(t["test"], t["arrivals"]) for t in h["os"]["timing"]["tests"]])
    la = _test(h, "lastack")
    assert len(la["arrivals"]) >= 3
    assert la["segment_ttl"] == 254  # lwIP's TTL 255, one routed hop
