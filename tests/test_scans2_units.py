"""Issue 20's pieces that need no lab: option parsing, probe bytes, the idle scan's decision rule,
the reply decoder for other IP protocols."""

from __future__ import annotations

import argparse
import math
import socket
import struct

import pytest

from hostprint.commands.scan import _protocol_split, parse_zombie
from hostprint.engine import packets as P
from hostprint.engine import sctp
from hostprint.engine.checksum import checksum
from hostprint.engine.rate import template
from hostprint.engine.replies import decode_reply
from hostprint.errors import UsageError
from hostprint.probes.idlescan import DECIDE_CLOSED, DECIDE_OPEN, _llr, _swap
from hostprint.probes.ipproto import IpProtoScan, parse_protocols, protocol_names


def test_protocol_part_of_p():
    assert _protocol_split("1,6,17", True) == (None, "1,6,17")
    assert _protocol_split("T:22,80,P:6,47,U:53", False) == ("T:22,80,U:53", "6,47")
    assert _protocol_split("22,80", False) == ("22,80", None)
    assert _protocol_split(None, False) == (None, None)


def test_parse_protocols():
    assert parse_protocols("0-3,255") == [0, 1, 2, 3, 255]
    assert parse_protocols("-2") == [0, 1, 2] and parse_protocols("254-") == [254, 255]
    if protocol_names():
        assert parse_protocols("tcp,udp,gre") == [6, 17, 47]
    for bad in ("256", "5-3", "", "x-y-z"):
        with pytest.raises(UsageError):
            parse_protocols(bad)


def test_parse_zombie():
    assert parse_zombie("198.18.0.51") == ("198.18.0.51", 80)
    assert parse_zombie("198.18.0.51:8080") == ("198.18.0.51", 8080)
    for bad in ("198.18.0.51:0", "198.18.0.51:x", "198.18.0.0/30"):
        with pytest.raises(UsageError):
            parse_zombie(bad)


def test_probe_bytes_are_well_formed():
    scan = IpProtoScan(["198.18.0.10"], [1, 2, 6, 17, 47, 132, 200], template(3))

    class FakeLink:  # only the two attributes _payload reads: our address and an Ethernet header
        src = "198.18.0.1"

        @staticmethod
        def eth(mac: bytes) -> P.Ethernet:
            return P.Ethernet(mac, b"\x02" * 6, P.ETH_P_IP)

    link = FakeLink()
    frames = {p: scan._frames(link, b"\x02" * 6, "198.18.0.10", p)[0] for p in scan.ports}  # type: ignore[arg-type]
    for proto, fr in frames.items():
        ip, off, end = P.decode_ipv4(fr, 14)
        assert ip.proto == proto and ip.id == scan.ipid(socket.inet_aton("198.18.0.10"), proto)
        assert checksum(fr[14:off]) == 0
        body = fr[off:end]
        if proto == 132:
            assert sctp.checksum_ok(body) and body[12] == sctp.INIT
            tag = struct.unpack_from("!I", body, 16)[0]
            assert tag == scan.sctp_tag(socket.inet_aton("198.18.0.10"), struct.unpack_from("!H", body)[0])
        elif proto == 2:
            assert body[0] == 0x11 and checksum(body) == 0
        elif proto == 47:
            assert body[:4] == b"\x00\x00\x08\x00" and len(body) == 24
        elif proto == 200:
            assert body == b""
    assert sctp.crc32c(b"123456789") == 0xE3069283


def test_other_protocols_reach_the_reply_decoder():
    src, dst = socket.inet_aton("198.18.0.10"), socket.inet_aton("198.18.0.1")
    fr = P.build_frame(P.Ethernet(b"\x02" * 6, b"\x02" * 6, P.ETH_P_IP), P.IPv4(src, dst, 132, id=7), b"\x00" * 16)
    r = decode_reply(0, fr)
    assert r is not None and r.proto == 132 and r.peer == src and isinstance(r.l4, bytes) and r.our_port is None
    frag = P.build_frame(P.Ethernet(b"\x02" * 6, b"\x02" * 6, P.ETH_P_IP), P.IPv4(src, dst, 132, mf=True), b"\x00" * 16)
    assert decode_reply(0, frag) is None


def test_idle_decision_rule():
    quiet = 1.0 * 0.005  # the background floor over one 5 ms test
    assert _llr(0, quiet) <= DECIDE_CLOSED  # one still reading: closed|filtered
    assert DECIDE_OPEN / 2 < _llr(1, quiet) < DECIDE_OPEN  # one move: not yet, two: open
    assert 2 * _llr(1, quiet) >= DECIDE_OPEN
    busy = 60 * 0.005
    assert _llr(1, busy) < _llr(1, quiet) and 2 * _llr(1, busy) < DECIDE_OPEN  # a busy zombie needs more tests
    assert math.isfinite(_llr(5, 0.0001))
    assert _swap(0x0102) == 0x0201


def test_random_target_flags_parse():
    from hostprint.cli import build_parser

    args = build_parser().parse_args(["scan", "-iR", "5", "--seed", "3", "-sL"])
    assert isinstance(args, argparse.Namespace) and args.random_targets == 5 and args.seed == "3" and args.list_scan
