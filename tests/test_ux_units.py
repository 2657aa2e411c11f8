"""Small pieces of issue 14 that need no lab: the SF fingerprint, the DNS wire format, nmap's time
values, target counting, and the report rules (0 % alternatives, -v-only DB details, "?")."""

from __future__ import annotations

import struct

import pytest

from hostprint.errors import UsageError
from hostprint.model import HostResult, OsMatch, PortResult, ScanRun, Service


def test_service_fingerprint_escapes_wraps_and_merges_identical_answers():
    from hostprint.report.servicefp import fingerprint

    class A:
        def __init__(self, trigger: str, data: bytes, tls: bool = False):
            self.trigger, self.data, self.tls = trigger, data, tls

    fp = fingerprint(7777, "tcp", [A("NULL", b'HELLO "x"\\ 1\r\n\x00'), A("http", b'HELLO "x"\\ 1\r\n\x00'),
                                   A("help", b""), A("rpc", b"Z" * 200)], version="hostprint-0.1.0", when=864000)
    assert fp is not None
    lines = fp.splitlines()
    assert lines[0].startswith("SF-Port7777-TCP:V=hostprint-0.1.0%I=7%D=1/11%Time=D2F00%P=")
    assert all(len(ln) <= 80 for ln in lines) and all(ln.startswith("SF:") for ln in lines[1:])
    text = lines[0] + "".join(ln[3:] for ln in lines[1:])
    assert 'r(NULL,F,"HELLO\\x20\\x22x\\x22\\x5C\\x201\\r\\n\\x00")' in text
    assert "r(http," not in text  # the same answer to another probe is listed once
    assert 'r(rpc,C8,"' + "Z" * 200 + '")' in text and text.endswith(";")
    assert fingerprint(1, "udp", [A("NULL", b"")], version="x") is None


def test_dns_ptr_query_and_compressed_answer():
    from hostprint.names import decode_ptr_answer, encode_query, ptr_name

    name = ptr_name("198.18.0.10")
    assert name == "10.0.18.198.in-addr.arpa"
    q = encode_query(0x1234, name)
    assert q[:12] == struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) and q.endswith(b"\x00\x0c\x00\x01")
    # answer: the question, then one PTR whose owner is a pointer to offset 12 and whose target
    # ends in a pointer into itself's first label (RFC 1035 §4.1.4)
    question = q[12:]
    target = b"\x03web\x04demo\x09hostprint\x04test\x00"
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 60, len(target)) + target
    ans = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + question + rr
    assert decode_ptr_answer(ans, 0x1234, name) == (True, "web.demo.hostprint.test")
    assert decode_ptr_answer(ans, 0x9999, name) == (False, None)  # another query's answer
    nx = struct.pack("!HHHHHH", 0x1234, 0x8183, 1, 0, 0, 0) + question
    assert decode_ptr_answer(nx, 0x1234, name) == (True, None)
    loop = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + question + b"\xc0\x0c" + struct.pack(
        "!HHIH", 12, 1, 60, 2) + b"\xc0\x30"  # a pointer to itself
    assert decode_ptr_answer(loop, 0x1234, name) == (True, None)


def test_nmap_time_values():
    from hostprint.commands.scan import nmap_time

    assert nmap_time("30s", "--x") == 30 and nmap_time("5m", "--x") == 300 and nmap_time("1h", "--x") == 3600
    assert nmap_time("250ms", "--x") == pytest.approx(0.25) and nmap_time("2", "--x") == 2
    for bad in ("0", "-1s", "5 minutes", "1d"):
        with pytest.raises(UsageError, match="--x"):
            nmap_time(bad, "--x")


def test_count_targets_without_expanding():
    from hostprint.targets import count_targets

    assert count_targets(["10.0.0.0/8", "198.18.1-3.1-254", "somehost", "somehost/24"]) == (1 << 24) + 3 * 254 + 1 + 256


def test_report_rules():
    from hostprint.report import nmapstyle as ns
    from hostprint.report.normal import format_normal

    m = OsMatch("Linux 6.x", family="Linux", confidence=0.9,
                evidence=[])
    from hostprint.model import Evidence

    m.evidence = [Evidence("stack", "Linux 6.x: hostprint linux.txt line 91: 3725/3725 points; measured class")]
    assert ns.evidence_lines(m, 0) == ["stack: Linux 6.x: measured class"]
    assert ns.evidence_lines(m, 1) == ["stack: Linux 6.x: hostprint linux.txt line 91: 3725/3725 points; measured class"]
    h = HostResult("198.18.0.10", "up", ["user-set"])
    h.os.matches = [m, OsMatch("FreeBSD", confidence=0.001)]
    assert [x.name for x in ns.os_matches(h)] == ["Linux 6.x"]
    assert ns.drop_zero_alternatives("Remote OS guesses: A (96%), B (0%) (3success/3tests)") == \
        "Remote OS guesses: A (96%) (3success/3tests)"
    h.ports = [PortResult(80, "tcp", "open", "syn-ack", 64, Service("http")),
               PortResult(81, "tcp", "closed", "reset", 64, Service("hosts2-ns"))]
    down = HostResult("198.18.0.11", "down", ["no-response"])
    run = ScanRun(args=["hostprint", "scan"], hosts=[h, down], stats={"service_scan": True})
    text = format_normal(run)
    assert "80/tcp open   http?" in text and "81/tcp closed hosts2-ns\n" in text
    assert "198.18.0.11" not in text and "2 IP addresses (1 host up)" in text
    run.stats["verbose"] = 1
    assert "Nmap scan report for 198.18.0.11 [host down]" in format_normal(run)
