"""IPv6 in the engine: codecs, extension headers, ICMPv6/ND, cookies, BPF, block parsing, routes,
ND and the RST guard.

The reference frames below were captured with tcpdump in the lab of tests/ipv6_lab.py (Linux
6.18 kernels in namespaces, 2001:2::/48): R's kernel answering probes crafted by hostprint, A's
own kernel soliciting R, and B's kernel fragmenting an echo reply over its 1280-byte link. So the
decoder is checked against a real stack's bytes, and the encoder against the kernel's own NS.
The lab tests at the end send through the engine (Link, ND, BPF, RST guard) to live kernels.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostprint.engine import bpf, ndp
from hostprint.engine import frames as F
from hostprint.engine import icmpv6 as C6
from hostprint.engine import ipv6 as I6
from hostprint.engine import packets as P
from hostprint.engine.checksum import checksum, pseudo_header_sum, pseudo_header_sum6
from hostprint.engine.cookie import Cookie, FastCookie, halves, split128
from hostprint.engine.ipv6_blocks import Addr6Index, icmp6_frames, tcp6, transport

A_MAC, R_MAC = bytes.fromhex("026836000101"), bytes.fromhex("026836000102")
A, R, B = I6.ip6_bytes("2001:2:0:1::1"), I6.ip6_bytes("2001:2:0:1::2"), I6.ip6_bytes("2001:2:0:2::2")

# A's kernel soliciting R (hop limit 255, source link-layer option).
KERNEL_NS = bytes.fromhex(
    "3333ff00000202683600010186dd6000000000203aff20010002000000010000000000000001ff020000000000000000"
    "0001ff0000028700002900000000200100020000000100000000000000020101026836000101"
)
# R's answer: router + solicited + override, target link-layer option.
KERNEL_NA = bytes.fromhex(
    "02683600010102683600010286dd6000000000203aff2001000200000001000000000000000220010002000000010000"
    "0000000000018800fc27e0000000200100020000000100000000000000020201026836000102"
)
# R's echo reply to our echo request (id 0xabcd, seq 1, "hello"; we sent flow label 0x12345).
ECHO_REPLY = bytes.fromhex(
    "02683600010102683600010286dd60069e9e000d3a402001000200000001000000000000000220010002000000010000"
    "00000000000181004f0cabcd000168656c6c6f"
)
# R's SYN-ACK from its listening port 8080 to our SYN (seq 1000, options M1460 S T N W7); the TCP
# checksum is partial (veth offload), as the wire carried it.
SYNACK = bytes.fromhex(
    "02683600010102683600010286dd6004a0df002806402001000200000001000000000000000220010002000000010000"
    "0000000000011f90fde828c776e8000003e9a012fb0440390000020405a00402080a6cc165ab000000010103030a"
)
# R's RST+ACK from closed port 8081.
RST = bytes.fromhex(
    "02683600010102683600010286dd600fae4c001406402001000200000001000000000000000220010002000000010000"
    "0000000000011f91fde900000000000003e95014000040250000"
)
# R's port unreachable for our UDP datagram 65002 -> 9999 ("x"), quoting all of it.
PORT_UNREACH = bytes.fromhex(
    "02683600010102683600010286dd600a778b00393a402001000200000001000000000000000220010002000000010000"
    "00000000000101044d4e0000000060000000000911402001000200000001000000000000000120010002000000010000"
    "000000000002fdea270f000922d778"
)
# R's time exceeded for our echo to B sent with hop limit 1.
TIME_EXCEEDED = bytes.fromhex(
    "02683600010102683600010286dd60086aae003b3a402001000200000001000000000000000220010002000000010000"
    "000000000001030022b80000000060000000000b3a012001000200000001000000000000000120010002000000020000"
    "0000000000028000b369abcd000274746c"
)
# R's packet too big (MTU 1280) for our 1348-byte echo to B; capture cut at 160 bytes (snaplen).
PACKET_TOO_BIG = bytes.fromhex(
    "02683600010102683600010286dd6008b8f904d83a402001000200000001000000000000000220010002000000010000"
    "00000000000102001cdf0000050060000000051c3a402001000200000001000000000000000120010002000000020000"
    "00000000000280005290abcd000342424242424242424242424242424242424242424242424242424242424242424242"
    "42424242424242424242424242424242"
)
# R's parameter problem (code 2, unrecognised option, pointer 42) for our echo whose destination
# options header carried option type 0x80 ("discard and send a parameter problem", RFC 8200 §4.2).
PARAM_PROBLEM = bytes.fromhex(
    "02683600010102683600010286dd600d211d00433a402001000200000001000000000000000220010002000000010000"
    "000000000001040265380000002a6000000000133c402001000200000001000000000000000120010002000000010000"
    "0000000000023a008004000000008000b06cabcd00046f7074"
)
# B's kernel fragmenting its 1408-byte echo reply (to `ping -6 -s 1400`): first fragment (cut at 120 bytes) and last.
FRAG_FIRST = bytes.fromhex(
    "02683600010102683600010286dd600d75ca04d82c3f2001000200000002000000000000000220010002000000010000"
    "0000000000013a000001e975dcf18100ec4c190d0001d627136b00000000d52e0a000000000010111213141516171819"
    "1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031"
)
FRAG_LAST = bytes.fromhex(
    "02683600010102683600010286dd600d75ca00b82c3f2001000200000002000000000000000220010002000000010000"
    "0000000000013a0004d0e975dcf1c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9"
    "eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f10111213141516171819"
    "1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243444546474849"
    "4a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f7071727374757677"
)
# A's kernel: MLDv2 report, with the hop-by-hop router alert option (RFC 3810 §5).
MLD_REPORT = bytes.fromhex(
    "33330000001602683600010186dd6000000000380001fe80000000000000006836fffe000101ff020000000000000000"
    "0000000000163a000502000001008f0037840000000204000000ff0200000000000000000001ff00010104000000ff02"
    "00000000000000000001ff000001"
)

CAPTURES = {"KERNEL_NS": KERNEL_NS, "KERNEL_NA": KERNEL_NA, "ECHO_REPLY": ECHO_REPLY, "SYNACK": SYNACK, "RST": RST,
            "PORT_UNREACH": PORT_UNREACH, "TIME_EXCEEDED": TIME_EXCEEDED, "PARAM_PROBLEM": PARAM_PROBLEM,
            "FRAG_LAST": FRAG_LAST, "MLD_REPORT": MLD_REPORT}


def d6(fr: bytes) -> P.Packet:
    return F.decode_frame_any(fr)


def segment(fr: bytes) -> tuple[I6.IPv6, bytes]:
    ip, off, end = I6.decode_ipv6(fr, 14)
    return ip, fr[off:end]


# ----------------------------------------------------------------------------- decoding real kernels


def test_echo_reply_from_linux():
    p = d6(ECHO_REPLY)
    assert p.version == 6 and p.ip.hlim == 64 and p.ip.ttl == 64 and p.ip.tc == 0
    assert p.ip.flow == 0x69E9E  # Linux picks its own flow label for the reply (not ours, 0x12345)
    assert (I6.ip6_str(p.ip.src), I6.ip6_str(p.ip.dst)) == ("2001:2:0:1::2", "2001:2:0:1::1")
    m = p.icmp6
    assert (m.type, m.code, m.id, m.seq, m.data) == (C6.ECHO_REPLY, 0, 0xABCD, 1, b"hello")
    assert F.transport_checksum_ok(*segment(ECHO_REPLY))  # the kernel's ICMPv6 checksum, pseudo-header included


def test_synack_and_rst_from_linux():
    t = d6(SYNACK).tcp
    assert (t.sport, t.dport, t.ack, P.flags_str(t.flags), t.window) == (8080, 65000, 1001, "SA", 64260)
    assert P.options_layout(t.options) == "MSTNW" and t.mss == 1440 and t.wscale == 10
    assert d6(SYNACK).ip.flow == 0x4A0DF
    r = d6(RST).tcp
    assert (r.sport, r.dport, r.seq, r.ack, P.flags_str(r.flags), r.window) == (8081, 65001, 0, 1001, "RA", 0)


def test_icmpv6_errors_from_linux_quote_the_probe():
    m = d6(PORT_UNREACH).icmp6
    assert (m.type, m.code) == (C6.DST_UNREACH, C6.UNREACH_PORT)
    qip, rest = m.quoted_packet()
    assert qip.proto == P.IPPROTO_UDP and qip.dst == R and struct.unpack("!HH", rest[:4]) == (65002, 9999)
    assert rest[8:] == b"x"
    assert F.transport_checksum_ok(*segment(PORT_UNREACH))

    m = d6(TIME_EXCEEDED).icmp6
    assert (m.type, m.code) == (C6.TIME_EXCEEDED, C6.TIMXCEED_HOPLIMIT)
    qip, rest = m.quoted_packet()
    assert qip.hlim == 1 and qip.dst == B and rest[:2] == bytes((C6.ECHO_REQUEST, 0))

    m = d6(PACKET_TOO_BIG).icmp6
    assert (m.type, m.mtu) == (C6.PACKET_TOO_BIG, 1280)
    qip, rest = m.quoted_packet()  # the quote is cut by the capture: still readable
    assert qip.plen == 1308 and qip.dst == B and rest[4:8] == b"\xab\xcd\x00\x03"

    m = d6(PARAM_PROBLEM).icmp6
    assert (m.type, m.code, m.pointer) == (C6.PARAM_PROBLEM, C6.PARAMPROB_OPTION, 42)
    qip, rest = m.quoted_packet()
    assert isinstance(qip.ext[0], I6.DestOpts) and qip.ext[0].options[0] == (0x80, b"\0\0\0\0")
    assert m.quoted[m.pointer] == 0x80  # the pointer names the option type byte


def test_neighbour_discovery_from_linux():
    na = d6(KERNEL_NA)
    m = na.icmp6
    assert na.ip.hlim == 255 and m.type == C6.NEIGHBOR_ADVERT and m.target == R
    assert m.router and m.solicited and m.override  # R forwards, so it says it is a router
    assert m.lladdr(C6.OPT_TARGET_LLADDR) == R_MAC
    assert ndp.parse_na(KERNEL_NA)[:2] == (R, R_MAC)
    ns = d6(KERNEL_NS).icmp6
    assert ns.type == C6.NEIGHBOR_SOLICIT and ns.target == R and ns.lladdr(C6.OPT_SOURCE_LLADDR) == A_MAC


def test_our_neighbour_solicitation_is_the_kernels_byte_for_byte():
    assert ndp.ns_frame(A_MAC, A, R) == KERNEL_NS
    assert I6.ip6_str(ndp.solicited_node(R)) == "ff02::1:ff00:2" and ndp.multicast_mac(ndp.solicited_node(R)) == bytes.fromhex("3333ff000002")


def test_na_validity_checks():
    assert ndp.parse_na(KERNEL_NA.replace(b"\x3a\xff", b"\x3a\x40", 1)) is None  # hop limit not 255: routed, refused
    assert ndp.parse_na(ECHO_REPLY) is None
    assert ndp.parse_na(KERNEL_NA[:60]) is None


def test_fragments_from_linux_are_kept_raw():
    p = d6(FRAG_FIRST)
    f = p.ip.fragment()
    assert (f.offset, f.more, f.ident, f.nh) == (0, True, 0xE975DCF1, I6.IPPROTO_ICMPV6)
    assert p.ip.proto == I6.IPPROTO_ICMPV6 and isinstance(p.l4, bytes) and p.l4[:1] == bytes((C6.ECHO_REPLY,))
    p = d6(FRAG_LAST)
    f = p.ip.fragment()
    assert (f.offset * 8, f.more, f.ident) == (1232, False, 0xE975DCF1) and p.ip.hlim == 63
    assert isinstance(p.l4, bytes) and len(p.l4) == 8 + 1400 - 1232  # `ping -s 1400`: 8 + 1400 bytes of ICMPv6


def test_mld_report_hop_by_hop_router_alert():
    p = d6(MLD_REPORT)
    hbh = p.ip.ext[0]
    assert isinstance(hbh, I6.HopByHop) and hbh.options == [(I6.OPT_ROUTER_ALERT, b"\0\0"), (I6.OPT_PADN, b"")]
    assert p.ip.proto == I6.IPPROTO_ICMPV6 and p.icmp6.type == C6.MLD2_REPORT


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_decode_then_encode_gives_the_captured_bytes(name):
    fr = CAPTURES[name]
    p = d6(fr)
    assert F.build_frame6(p.eth, p.ip, p.l4) == fr


def test_ipv6_is_opt_in_for_existing_callers():
    p = P.decode_frame(ECHO_REPLY)
    assert p.ip is None and p.l4 is None and p.eth.type == P.ETH_P_IPV6
    ip, l4 = F.decode_ip_any(ECHO_REPLY[14:])
    assert isinstance(ip, I6.IPv6) and l4.type == C6.ECHO_REPLY


# ----------------------------------------------------------------------------- encoding


def test_ipv6_header_fields_settable():
    ip = I6.IPv6(A, R, hlim=3, tc=0xB8, flow=0xFFFFF)
    raw = F.build_ip6(ip, P.UDP(1, 2, b"abc"))
    back, l4 = F.decode_ip6_packet(raw)
    assert (back.hlim, back.tc, back.flow, back.plen, back.proto) == (3, 0xB8, 0xFFFFF, 11, P.IPPROTO_UDP)
    assert l4.payload == b"abc" and F.transport_checksum_ok(back, raw[40:])


def test_pseudo_header_sum_serves_both_families():
    assert pseudo_header_sum(A, R, 6, 20) == pseudo_header_sum6(A, R, 6, 20)
    v4 = pseudo_header_sum(b"\xc6\x12\0\1", b"\xc6\x12\0\2", 6, 40)
    assert v4 == 0xC612 + 1 + 0xC612 + 2 + 6 + 40
    big = pseudo_header_sum6(A, R, 17, 0x12345)  # the 32-bit length of a jumbogram-sized payload
    assert big == pseudo_header_sum6(A, R, 17, 0) + 1 + 0x2345


def test_udp_zero_checksum_becomes_ffff_over_ipv6():
    """Zero means "no checksum", which IPv6 forbids for UDP (RFC 8200 §8.1): a computed zero is
    sent as 0xFFFF. The payload word is chosen so that the sum comes out as zero."""
    from hostprint.engine.checksum import fold

    s = fold(checksum(P.UDP(1, 7, b"\0\0").encode(A, R)[:6] + b"\0\0\0\0", pseudo_header_sum6(A, R, 17, 10)) ^ 0xFFFF)
    seg = P.UDP(1, 7, struct.pack("!H", 0xFFFF - s)).encode(A, R)
    assert seg[6:8] == b"\xff\xff"
    assert checksum(seg, pseudo_header_sum6(A, R, 17, len(seg))) == 0


def test_routing_header_checksum_uses_final_destination():
    rh = I6.Routing.with_addresses([B])
    raw = F.build_ip6(I6.IPv6(A, R, ext=[rh]), C6.echo_request(1, 1))
    ip, off, _ = I6.decode_ipv6(raw)
    assert ip.final_dst() == B and ip.ext[0].segleft == 1
    assert checksum(raw[off:], pseudo_header_sum6(A, B, 58, len(raw) - off)) == 0
    assert checksum(raw[off:], pseudo_header_sum6(A, R, 58, len(raw) - off)) != 0
    srh = I6.Routing(4, 1, b"\0" * 4 + B + R)  # SRH: segment list[0] is the last segment
    assert srh.final_destination() == B and I6.Routing(4, 0, b"\0" * 4 + B).final_destination() is None


def test_nmap_ie2_chain_in_wrong_order_round_trips():
    """nmap's IE2 probe: HbH, DestOpts, Routing, HbH — a second hop-by-hop header after others."""
    ext = [I6.HopByHop(), I6.DestOpts(), I6.Routing(0, 0), I6.HopByHop()]
    raw = F.build_ip6(I6.IPv6(A, R, flow=0x12345, ext=ext), C6.echo_request(0xABCD, 0, bytes(120), code=9))
    ip, m = F.decode_ip6_packet(raw)
    assert [type(h).__name__ for h in ip.ext] == ["HopByHop", "DestOpts", "Routing", "HopByHop"]
    assert [h.nh for h in ip.ext] == [60, 43, 0, 58] and ip.nh == 0
    assert (m.code, m.id, len(m.data)) == (9, 0xABCD, 120)


def test_options_padding_follows_rfc8200():
    for opts, length in (([], 8), ([(5, b"\0\0")], 8), ([(0x1E, b"abcd")], 8), ([(0x1E, b"abcde")], 16)):
        h = I6.DestOpts(opts).encode(59)
        assert len(h) == length and (h[1] + 1) * 8 == length
        back, bad = I6.decode_options(h[2:])
        assert not bad and back[:len(opts)] == opts
    assert I6.encode_options([(5, b"\0\0")])[-1:] == b"\0" and I6.encode_options([(5, b"\0\0")], pad=False) == b"\x05\x02\0\0"


def test_fragment_header_fields():
    h = I6.Fragment(offset=0x1FFF, more=True, ident=0xDEADBEEF, reserved=7, res2=3).encode(6)
    assert h == bytes.fromhex("0607ffffdeadbeef")  # offset<<3 | res2<<1 | M = 0xffff
    ip, _, _ = I6.decode_ipv6(I6.IPv6(A, R, 6, ext=[I6.Fragment(offset=0x1FFF, more=True, ident=0xDEADBEEF, reserved=7, res2=3)]).encode(0))
    f = ip.ext[0]
    assert (f.offset, f.more, f.ident, f.reserved, f.res2, f.nh) == (0x1FFF, True, 0xDEADBEEF, 7, 3, 6)


def test_icmpv6_messages_round_trip():
    msgs = [C6.echo_request(7, 9, b"abc"), C6.neighbor_solicitation(R, A_MAC),
            C6.neighbor_advertisement(A, A_MAC, router=True), C6.error(C6.PACKET_TOO_BIG, 0, bytes(2000), word=1280),
            C6.error(C6.PARAM_PROBLEM, C6.PARAMPROB_NEXTHEADER, b"q" * 48, word=6),
            C6.ICMPv6(C6.ROUTER_SOLICIT, options=[(C6.OPT_SOURCE_LLADDR, A_MAC)]),
            C6.ICMPv6(C6.ROUTER_ADVERT, word=0x40000708, data=bytes(8), options=[(C6.OPT_MTU, bytes(6))]),
            C6.ICMPv6(C6.REDIRECT, target=R, dest=B, options=[(C6.OPT_TARGET_LLADDR, R_MAC)]),
            C6.ICMPv6(C6.MLD_QUERY, data=bytes(20))]
    for m in msgs:
        raw = m.encode(A, R)
        assert checksum(raw, pseudo_header_sum6(A, R, 58, len(raw))) == 0
        back = C6.decode_icmpv6(raw)
        for f in ("type", "code", "id", "seq", "data", "word", "quoted", "target", "dest", "options"):
            assert getattr(back, f) == getattr(m, f), (m.type, f)
        assert not back.opt_bad
    assert len(C6.error(1, 4, bytes(5000)).quoted) == 1232  # the error fits the minimum MTU


def test_nd_option_errors_are_flagged_not_raised():
    m = C6.decode_icmpv6(C6.ICMPv6(C6.NEIGHBOR_ADVERT, target=R).encode(A, R) + b"\x02\x00" + bytes(6))
    assert m.opt_bad and m.options == []  # length 0 (RFC 4861 §4.6: discard)
    m = C6.decode_icmpv6(C6.ICMPv6(C6.NEIGHBOR_ADVERT, target=R).encode(A, R) + b"\x02\x02" + bytes(6))
    assert m.opt_bad  # runs past the message


def test_scapy_builds_the_same_bytes():
    """Cross-check of the encoder with an independent implementation (a test-only dependency)."""
    scapy = pytest.importorskip("scapy.all")
    import logging

    logging.getLogger("scapy").setLevel(logging.ERROR)
    S = scapy
    a, r, b = "2001:2:0:1::1", "2001:2:0:1::2", "2001:2:0:2::2"
    ours_theirs = [
        (F.build_ip6(I6.IPv6(A, R, hlim=33, tc=0x28, flow=0x12345),
                      P.TCP(40000, 80, 7, 0, P.SYN | P.ECE | P.CWR, 1024, 63477,
                            [(P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (1, 2)), (P.OPT_NOP, None), (P.OPT_WS, 10)])),
         S.IPv6(src=a, dst=r, hlim=33, tc=0x28, fl=0x12345) / S.TCP(sport=40000, dport=80, seq=7, flags="SEC", window=1024, urgptr=63477,
                                                                      options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 10)])),
        (F.build_ip6(I6.IPv6(A, R), P.UDP(5353, 53, b"\x43" * 300)),
         S.IPv6(src=a, dst=r) / S.UDP(sport=5353, dport=53) / (b"\x43" * 300)),
        (F.build_ip6(I6.IPv6(A, B, ext=[I6.HopByHop([(I6.OPT_ROUTER_ALERT, b"\0\0")]), I6.DestOpts(),
                                         I6.Routing.with_addresses([R, B], segleft=2), I6.Fragment(ident=77)]),
                      C6.echo_request(1, 2, b"hi")),
         S.IPv6(src=a, dst=b) / S.IPv6ExtHdrHopByHop(options=[S.RouterAlert(value=0)]) / S.IPv6ExtHdrDestOpt()
         / S.IPv6ExtHdrRouting(addresses=[r, b], segleft=2) / S.IPv6ExtHdrFragment(id=77) / S.ICMPv6EchoRequest(id=1, seq=2, data=b"hi")),
        (F.build_ip6(I6.IPv6(A, R, hlim=255), C6.neighbor_solicitation(R, A_MAC)),
         S.IPv6(src=a, dst=r, hlim=255) / S.ICMPv6ND_NS(tgt=r) / S.ICMPv6NDOptSrcLLAddr(lladdr="02:68:36:00:01:01")),
        (F.build_ip6(I6.IPv6(R, A, hlim=255), C6.neighbor_advertisement(R, R_MAC, router=True)),
         S.IPv6(src=r, dst=a, hlim=255) / S.ICMPv6ND_NA(R=1, S=1, O=1, tgt=r) / S.ICMPv6NDOptDstLLAddr(lladdr="02:68:36:00:01:02")),
        (F.build_ip6(I6.IPv6(R, A), C6.error(C6.DST_UNREACH, 4, b"Q" * 60)),
         S.IPv6(src=r, dst=a) / S.ICMPv6DestUnreach(code=4) / S.Raw(b"Q" * 60)),
        (F.build_ip6(I6.IPv6(R, A), C6.error(C6.PACKET_TOO_BIG, 0, b"Q" * 60, word=1280)),
         S.IPv6(src=r, dst=a) / S.ICMPv6PacketTooBig(mtu=1280) / S.Raw(b"Q" * 60)),
        (F.build_ip6(I6.IPv6(R, A), C6.error(C6.TIME_EXCEEDED, 1, b"Q" * 60)),
         S.IPv6(src=r, dst=a) / S.ICMPv6TimeExceeded(code=1) / S.Raw(b"Q" * 60)),
        (F.build_ip6(I6.IPv6(R, A), C6.error(C6.PARAM_PROBLEM, 2, b"Q" * 60, word=42)),
         S.IPv6(src=r, dst=a) / S.ICMPv6ParamProblem(code=2, ptr=42) / S.Raw(b"Q" * 60)),
    ]
    for i, (ours, theirs) in enumerate(ours_theirs):
        assert ours == S.raw(theirs), i


# ----------------------------------------------------------------------------- extension-header walk bounds


def test_chain_longer_than_the_bound_is_refused():
    ip = I6.IPv6(A, R, 59, ext=[I6.DestOpts() for _ in range(I6.MAX_EXT_HEADERS + 1)])
    with pytest.raises(P.DecodeError, match="more than"):
        I6.decode_ipv6(ip.encode(0))
    ok = I6.IPv6(A, R, 59, ext=[I6.DestOpts() for _ in range(I6.MAX_EXT_HEADERS)])
    assert len(I6.decode_ipv6(ok.encode(0))[0].ext) == I6.MAX_EXT_HEADERS


def test_self_referencing_chain_ends_in_decode_error():
    """Every header names hop-by-hop as its successor: the walk ends at the packet's end."""
    ext = [I6.HopByHop(nh=0) for _ in range(5)]
    with pytest.raises(P.DecodeError):
        I6.decode_ipv6(I6.IPv6(A, R, ext=ext).encode(0))


def test_truncated_and_overlong_headers():
    raw = F.build_ip6(I6.IPv6(A, R, ext=[I6.DestOpts([(0x1E, bytes(20))])]), P.UDP(1, 2))
    for cut in (41, 47, 60):
        with pytest.raises(P.DecodeError):
            F.decode_ip6_packet(raw[:cut])
    bad_len = raw[:41] + b"\xff" + raw[42:]  # header claims 2048 bytes
    with pytest.raises(P.DecodeError, match="past"):
        I6.decode_ipv6(bad_len)
    short_plen = raw[:4] + b"\0\x04" + raw[6:]  # payload length 4: the chain does not fit
    with pytest.raises(P.DecodeError):
        I6.decode_ipv6(short_plen)


def test_walk_stops_at_esp_no_next_header_and_non_first_fragments():
    ip, l4 = F.decode_ip6_packet(I6.IPv6(A, R, I6.IPPROTO_ESP).encode(8) + bytes(8))
    assert ip.proto == I6.IPPROTO_ESP and l4 == bytes(8)
    ip, l4 = F.decode_ip6_packet(I6.IPv6(A, R, ext=[I6.DestOpts()]).encode(0))
    assert ip.proto == I6.IPPROTO_NONE and l4 == b""
    # a non-first fragment whose data looks like a hop-by-hop header: not walked
    raw = I6.IPv6(A, R, ext=[I6.Fragment(offset=10, nh=0)]).encode(8) + b"\x06\x00" + bytes(6)
    ip, l4 = F.decode_ip6_packet(raw)
    assert len(ip.ext) == 1 and ip.proto == 0 and l4 == b"\x06\x00" + bytes(6)
    # an atomic fragment (RFC 6946) is an ordinary packet
    ip, l4 = F.decode_ip6_packet(F.build_ip6(I6.IPv6(A, R, ext=[I6.Fragment()]), P.TCP(1, 2)))
    assert isinstance(l4, P.TCP)


def test_ah_length_counts_four_octet_units():
    ah = I6.RawExt(I6.IPPROTO_AH, bytes(22))  # 24 bytes = (4 + 2) * 4
    raw = F.build_ip6(I6.IPv6(A, R, ext=[ah]), P.TCP(1, 2))
    ip, l4 = F.decode_ip6_packet(raw)
    assert ip.ext[0].length == 4 and isinstance(l4, P.TCP) and l4.dport == 2


def test_jumbo_payload_length_zero_means_rest_of_buffer():
    raw = F.build_ip6(I6.IPv6(A, R, plen=0), P.UDP(1, 2, b"zz"))
    ip, _, end = I6.decode_ipv6(raw)
    assert ip.plen == 0 and end == len(raw)


# ----------------------------------------------------------------------------- cookies


def test_ipv4_cookies_are_unchanged():
    """Values from the cookie code before IPv6 existed: bulk scans and checks must still agree."""
    c = Cookie(0x1234567890ABCDEF)
    assert [c(0xC6120002, 80, 61000), c(0xC6120002, 80, 61000, 7), c(0, 0, 0), c(0xFFFFFFFF, 65535, 65535, 3)] == \
        [962440840, 3074073516, 3621256018, 5040538]
    f = FastCookie(c, 9)
    hk = f.host_key(0xC612000A)
    assert (hk, f.value(hk, 443, 65000)) == (1471298199, 1515648463)
    assert c.batch(np.array([0xC6120002, 0xFFFFFFFF]), np.array([80, 65535]), np.array([61000, 65535]), 3).tolist() == \
        [3641883666, 5040538]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 1000))
def test_ipv6_cookie_batch_equals_scalar(addr, dport, sport, salt):
    c = Cookie(0xFEEDFACECAFEBEEF)
    hi, lo = halves([addr])
    assert split128(addr) == (int(hi[0]), int(lo[0]))
    v = c.v6(addr, dport, sport, salt)
    assert int(c.batch6(hi, lo, np.array([dport]), np.array([sport]), salt)[0]) == v
    assert v == c.v6(I6.ip6_str(addr), dport, sport, salt) == c.v6(int.from_bytes(addr, "big"), dport, sport, salt)
    f = FastCookie(c, salt)
    assert int(f.host_keys6(hi, lo)[0]) == f.host_key6(addr)


def test_ipv6_cookie_uses_every_address_bit_and_the_key():
    c = Cookie(1)
    base = int.from_bytes(A, "big")
    values = {c.v6(base ^ (1 << bit), 80, 65000) for bit in range(128)}
    assert len(values) == 128 and c.v6(base, 80, 65000) not in values
    assert Cookie(2).v6(base, 80, 65000) != c.v6(base, 80, 65000)
    assert Cookie(1).fold6(base) != Cookie(2).fold6(base)  # the fold itself is keyed


# ----------------------------------------------------------------------------- BPF on bytes


def _frame6(dst: bytes, marker: bytes = b"") -> bytes:
    return F.build_frame6(P.Ethernet(A_MAC, R_MAC), I6.IPv6(R, dst), P.UDP(1, 2, marker))


def _frame4(dst: str, marker: bytes = b"") -> bytes:
    import socket

    return P.build_frame(P.Ethernet(A_MAC, R_MAC), P.IPv4(socket.inet_aton("198.18.200.2"), socket.inet_aton(dst), P.IPPROTO_UDP),
                         P.UDP(1, 2, marker))


ARP_FRAME = P.Ethernet(b"\xff" * 6, R_MAC, P.ETH_P_ARP).encode() + P.ARP().encode()


def test_bpf_ipv6_filter_semantics():
    prog = bpf.receive_filter6(["2001:2:0:1::1", "2001:2:0:1::5"])
    assert bpf.run(prog, _frame6(A)) > 0 and bpf.run(prog, _frame6(I6.ip6_bytes("2001:2:0:1::5"))) > 0
    assert bpf.run(prog, _frame6(R)) == 0 and bpf.run(prog, _frame6(I6.ip6_bytes("2001:2:0:1::1:1"))) == 0
    assert bpf.run(prog, _frame4("198.18.200.1")) == 0 and bpf.run(prog, ARP_FRAME) == 0
    assert bpf.run(prog, _frame6(A), pkttype=bpf.PACKET_OUTGOING) == 0
    anyv6 = bpf.receive_filter6([])
    assert bpf.run(anyv6, _frame6(R)) > 0 and bpf.run(anyv6, _frame4("198.18.200.1")) == 0


def test_bpf_dual_filter_semantics():
    prog = bpf.receive_filter_any(["198.18.200.1", "2001:2:0:1::1"])
    assert bpf.run(prog, _frame4("198.18.200.1")) > 0 and bpf.run(prog, _frame4("198.18.200.9")) == 0
    assert bpf.run(prog, _frame6(A)) > 0 and bpf.run(prog, _frame6(R)) == 0
    assert bpf.run(prog, ARP_FRAME) > 0
    assert bpf.run(bpf.receive_filter_any(["198.18.200.1", "2001:2:0:1::1"], arp=False), ARP_FRAME) == 0
    assert bpf.run(bpf.receive_filter(["198.18.200.1", "2001:2:0:1::1"]), _frame6(A)) > 0  # mixed list: dual
    only4 = bpf.receive_filter_any(["198.18.200.1"])
    assert bpf.run(only4, _frame6(A)) == 0  # a family without addresses is dropped
    both_any = bpf.receive_filter_any([], any_address=True)
    assert bpf.run(both_any, _frame6(R)) > 0 and bpf.run(both_any, _frame4("198.18.200.9")) > 0
    many = bpf.receive_filter_any([f"2001:2:0:1::{i:x}" for i in range(1, 300)] + ["198.18.200.1"])
    assert bpf.run(many, _frame6(I6.ip6_bytes("2001:2:0:1::12b"))) > 0 and bpf.run(many, _frame6(R)) > 0
    assert bpf.run(many, _frame6(I6.ip6_bytes("2001:2:0:1::12c"))) == 0
    with pytest.raises(ValueError, match="255"):
        bpf.receive_filter([f"198.18.{i // 250}.{i % 250 + 1}" for i in range(300)])


def test_na_filter_semantics():
    prog = ndp.na_filter("2001:2:0:1::1")
    assert bpf.run(prog, KERNEL_NA) > 0
    assert bpf.run(prog, ECHO_REPLY) == 0 and bpf.run(prog, KERNEL_NS) == 0
    assert bpf.run(prog, KERNEL_NA, pkttype=bpf.PACKET_OUTGOING) == 0


# ----------------------------------------------------------------------------- vectorised block parsing


def _ring(frames: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ring = np.frombuffer(b"".join(frames) + bytes(64), np.uint8)
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
    return ring, starts, np.array([len(f) for f in frames], np.int64)


def test_block_parser_agrees_with_the_frame_decoder():
    eth = P.Ethernet(A_MAC, R_MAC)
    frames = [SYNACK, RST, ECHO_REPLY, PORT_UNREACH, FRAG_LAST, KERNEL_NA]
    for i in range(40):
        ext = [[], [I6.DestOpts()], [I6.HopByHop(), I6.Fragment(ident=i)], [I6.RawExt(I6.IPPROTO_AH, bytes(14))]][i % 4]
        frames.append(F.build_frame6(eth, I6.IPv6(R, A, hlim=60 + i % 5, tc=i, flow=i * 977, ext=ext),
                                      P.TCP(80 + i, 65000 + i, 10 * i, 20 * i, P.SYN | P.ACK, 100 + i)))
    frames.append(F.build_frame6(eth, I6.IPv6(R, A, ext=[I6.Fragment(offset=5)]), P.TCP(1, 2)))  # non-first fragment
    frames.append(_frame4("198.18.200.1"))
    ring, starts, lens = _ring(frames)
    blk = tcp6(ring, starts, lens)
    expect = [i for i, f in enumerate(frames) if isinstance(d6(f).l4, P.TCP)]
    assert blk.idx.tolist() == expect
    for j, i in enumerate(blk.idx.tolist()):
        p = d6(frames[i])
        t = p.tcp
        got = (blk.sport[j], blk.dport[j], blk.seq[j], blk.ack[j], blk.flags[j], blk.window[j], blk.hlim[j], blk.tc[j], blk.flow[j])
        assert tuple(int(x) for x in got) == (t.sport, t.dport, t.seq, t.ack, t.flags, t.window, p.ip.hlim, p.ip.tc, p.ip.flow)
        assert (int(blk.src_hi[j]) << 64 | int(blk.src_lo[j])) == int.from_bytes(p.ip.src, "big")
    assert icmp6_frames(ring, starts, lens).tolist() == [i for i, f in enumerate(frames) if d6(f).icmp6 is not None]
    ok, _, _ = transport(ring, starts, lens, max_ext=1)
    assert not ok[8]  # two headers, one round allowed: refused, not misread


def test_addr6_index():
    addrs = [I6.ip6_bytes(f"2001:2:0:1::{i:x}") for i in (5, 1, 0xFFFF, 3)]
    idx = Addr6Index(*halves(addrs))
    hi, lo = halves([I6.ip6_bytes("2001:2:0:1::3"), I6.ip6_bytes("2001:2:0:1::4"), I6.ip6_bytes("2001:2:0:1::ffff")])
    assert idx.lookup(hi, lo).tolist() == [3, -1, 2]
    assert Addr6Index(*halves(np.zeros((0, 16), np.uint8))).lookup(hi, lo).tolist() == [-1, -1, -1]


# ----------------------------------------------------------------------------- lab: real kernels


@pytest.fixture(scope="module")
def v6lab():
    if os.geteuid() != 0:
        pytest.skip("needs root to build network namespaces")
    from ipv6_lab import V6Lab

    lab = V6Lab()
    try:
        yield lab
    finally:
        lab.close()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        assert lab.a not in left and lab.r not in left and lab.b not in left


def _exchange(lab, probes: list[bytes], expect: int, **kw) -> tuple[bytes, list[P.Packet]]:
    from ipv6_lab import A_V4, A_V6, R_V6

    spec = {"iface": "eth0", "addresses": [A_V4, A_V6], "next_hop": kw.pop("next_hop", R_V6),
            "probes": [p.hex() for p in probes], "expect": expect, **kw}
    out = lab.task(lab.a, "exchange", spec)
    assert out["mac"] is not None, "neighbour discovery got no answer"
    pkts = [F.decode_frame_any(bytes.fromhex(f), t / 1e9) for f, t in zip(out["frames"], out["ts"])]
    return bytes.fromhex(out["mac"]), [p for p in pkts if not (p.icmp6 and p.icmp6.type in (135, 136))]


@pytest.mark.lab
def test_lab_echo_syn_and_udp_through_the_engine(v6lab):
    """ND finds R's MAC, and R's kernel answers what our codec built: an echo, a SYN to its open
    port and to a closed one, UDP to a closed port. A SYN with a wrong checksum goes unanswered,
    so the accepted ones prove the pseudo-header checksum."""
    syn = P.TCP(65010, 8080, 1000, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)])
    bad = F.build_ip6(I6.IPv6(A, R), P.TCP(65013, 8080, 1000, 0, P.SYN, 1024))
    bad = bad[:56] + bytes([bad[56] ^ 0xFF]) + bad[57:]  # corrupt the TCP checksum
    probes = [F.build_ip6(I6.IPv6(A, R, flow=0x12345, hlim=7), C6.echo_request(0xABCD, 1, b"hello")),
              F.build_ip6(I6.IPv6(A, R), syn), F.build_ip6(I6.IPv6(A, R), P.TCP(65011, 8081, 5, 0, P.SYN, 1024)),
              F.build_ip6(I6.IPv6(A, R), P.UDP(65012, 9999, b"x")), bad]
    mac, pkts = _exchange(v6lab, probes, 4, timeout=5, full_wait=True)
    assert mac == R_MAC
    echo = [p for p in pkts if p.icmp6 and p.icmp6.type == C6.ECHO_REPLY]
    assert len(echo) == 1 and (echo[0].icmp6.id, echo[0].icmp6.seq, echo[0].icmp6.data) == (0xABCD, 1, b"hello")
    assert echo[0].ip.hlim == 64 and echo[0].ip.src == R and echo[0].eth.src == R_MAC
    assert all(abs(p.ts - time.time()) < 3600 for p in pkts)  # the ring's kernel receive stamps (wall clock, ns)
    tcp = {p.tcp.dport: p.tcp for p in pkts if p.tcp}
    assert P.flags_str(tcp[65010].flags) == "SA" and tcp[65010].ack == 1001 and tcp[65010].mss == 1440
    assert P.flags_str(tcp[65011].flags) == "RA" and tcp[65011].ack == 6
    assert 65013 not in tcp
    unreach = [p.icmp6 for p in pkts if p.icmp6 and p.icmp6.type == C6.DST_UNREACH]
    assert len(unreach) == 1 and unreach[0].code == C6.UNREACH_PORT
    qip, rest = unreach[0].quoted_packet()
    assert qip.src == A and struct.unpack("!HH", rest[:4]) == (65012, 9999)


@pytest.mark.lab
def test_lab_extension_headers_meet_a_real_kernel(v6lab):
    """Linux accepts padded options and an atomic fragment, answers an unknown must-report option
    with a parameter problem pointing at it, and answers two fragments we cut ourselves."""
    payload = bytes(range(256)) * 6
    whole = C6.echo_request(0xABCD, 7, payload).encode(A, B)
    frag1 = I6.IPv6(A, B, I6.IPPROTO_ICMPV6, ext=[I6.Fragment(0, True, 0x5151, nh=58)]).encode(1200) + whole[:1200]
    frag2 = I6.IPv6(A, B, I6.IPPROTO_ICMPV6, ext=[I6.Fragment(150, False, 0x5151, nh=58)]).encode(len(whole) - 1200) + whole[1200:]
    probes = [
        F.build_ip6(I6.IPv6(A, R, ext=[I6.HopByHop([(I6.OPT_PADN, bytes(4))]), I6.DestOpts([(0x1E, b"ab")]), I6.Fragment(ident=9)]),
                     C6.echo_request(0xABCD, 2, b"ext")),
        F.build_ip6(I6.IPv6(A, R, ext=[I6.DestOpts([(0x80, bytes(4))])]), C6.echo_request(0xABCD, 3, b"opt")),
        frag1, frag2,
    ]
    _, pkts = _exchange(v6lab, probes, 4, timeout=5)
    echoes = {p.icmp6.seq: p.icmp6 for p in pkts if p.icmp6 and p.icmp6.type == C6.ECHO_REPLY}
    assert echoes[2].data == b"ext"
    pp = [p.icmp6 for p in pkts if p.icmp6 and p.icmp6.type == C6.PARAM_PROBLEM]
    assert len(pp) == 1 and pp[0].code == C6.PARAMPROB_OPTION and pp[0].quoted[pp[0].pointer] == 0x80
    frags = [p for p in pkts if p.ip.src == B and p.ip.fragment() is not None]
    assert len(frags) == 2  # B reassembled our fragments and fragmented its 1544-byte reply for its 1280 link
    first = next(p for p in frags if p.ip.fragment().offset == 0)
    assert first.l4[:1] == bytes((C6.ECHO_REPLY,)) and first.ip.hlim == 63


@pytest.mark.lab
def test_lab_router_errors(v6lab):
    """R's kernel: time exceeded for hop limit 1, packet too big for B's 1280-byte link."""
    probes = [F.build_ip6(I6.IPv6(A, B, hlim=1), C6.echo_request(0xABCD, 5, b"ttl")),
              F.build_ip6(I6.IPv6(A, B), C6.echo_request(0xABCD, 6, bytes(1300)))]
    _, pkts = _exchange(v6lab, probes, 2, timeout=5)
    errs = {p.icmp6.type: p.icmp6 for p in pkts if p.icmp6}
    te, ptb = errs[C6.TIME_EXCEEDED], errs[C6.PACKET_TOO_BIG]
    assert te.code == 0 and te.quoted_packet()[0].dst == B and te.quoted_packet()[1][4:8] == b"\xab\xcd\x00\x05"
    assert ptb.mtu == 1280 and len(ptb.quoted) == 1232


@pytest.mark.lab
def test_lab_routes_and_neighbours(v6lab):
    from ipv6_lab import A_V6, R_V6

    out = v6lab.task(v6lab.a, "routes", {"targets": ["2001:2:0:2::2", "2001:2:0:1::2", A_V6, "::1", "2001:2:0:9::1"]})
    assert out["2001:2:0:2::2"] == ["eth0", A_V6, R_V6, False]
    assert out["2001:2:0:1::2"] == ["eth0", A_V6, None, False]
    assert out[A_V6][0] == "lo" and out[A_V6][3] and out["::1"][3]
    assert out["2001:2:0:9::1"][0] == "error" and "no route" in out["2001:2:0:9::1"][1]
    assert out["kernel_source"] == A_V6
    subprocess.run(["ip", "netns", "exec", v6lab.a, "ping", "-6", "-c", "1", "-W", "2", R_V6], capture_output=True, check=True)
    out = v6lab.task(v6lab.a, "routes", {"targets": [R_V6]})
    assert out["neighbours"][R_V6] == "02:68:36:00:01:02"


@pytest.mark.lab
@pytest.mark.parametrize("program", ["v6", "any", "mixed_list"])
def test_lab_bpf_filters_on_a_real_socket(v6lab, program):
    """The programs attached to an AF_PACKET socket in A; R sends frames of every kind to A's MAC."""
    from ipv6_lab import A_V4, A_V6

    listener = v6lab.spawn(v6lab.a, [sys.executable, os.path.join(os.path.dirname(__file__), "ipv6_lab.py"), "bpf_listen",
                                     json.dumps({"program": program, "addresses": [A_V4, A_V6]})], stdout=subprocess.PIPE)
    try:
        assert listener.stdout.readline().strip() == "ready"
        frames = {"v6-ours-": _frame6(A, b"v6-ours-"), "v6-other": _frame6(I6.ip6_bytes("2001:2:0:1::99"), b"v6-other"),
                  "v4-ours-": _frame4(A_V4, b"v4-ours-"), "v4-other": _frame4("198.18.200.99", b"v4-other"),
                  "arp-----": ARP_FRAME[:-8] + b"arp-----"}
        order = ["v6-other", "v4-other", "arp-----", "v4-ours-", "v6-ours-"]
        end = _frame6(A, b"END-MARK")
        v6lab.task(v6lab.r, "send_frames", {"iface": "eth0", "frames": [frames[k].hex() for k in order] + [end.hex()]})
        out = json.loads(listener.stdout.readline())
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.wait(timeout=10)
    passed = [m for m in out["passed"] if m in frames or m == "END-MARK"]
    want = {"v6": ["v6-ours-", "END-MARK"], "any": ["arp-----", "v4-ours-", "v6-ours-", "END-MARK"],
            "mixed_list": ["arp-----", "v4-ours-", "v6-ours-", "END-MARK"]}[program]
    assert passed == want


@pytest.mark.lab
def test_lab_rst_guard_keeps_ipv6_target_half_open(v6lab):
    """Unguarded, A's kernel resets R's SYN-ACK; guarded (ip6 set), R retransmits it after its
    initial RTO (1 s), so we see at least two."""
    lo, hi = 65100, 65199

    def synacks(guarded: bool, sport: int) -> int:
        spec = {"guard": [lo, hi] if guarded else None, "guard_addrs": ["2001:2:0:1::2"], "timeout": 2.5, "full_wait": True}
        _, pkts = _exchange(v6lab, [F.build_ip6(I6.IPv6(A, R), P.TCP(sport, 8080, 1000, 0, P.SYN, 1024))], 1, **spec)
        return sum(1 for p in pkts if p.tcp and p.tcp.dport == sport and p.tcp.flags & P.SYN and p.tcp.flags & P.ACK)

    assert synacks(False, lo + 1) == 1
    assert synacks(True, lo + 2) >= 2
    tables = subprocess.run(["ip", "netns", "exec", v6lab.a, "nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    assert "hostprint_" not in tables


@pytest.mark.lab
def test_lab_rst_guard_with_ipv6_set_removed_on_exception_and_sigterm(v6lab):
    def tables() -> str:
        return subprocess.run(["ip", "netns", "exec", v6lab.a, "nft", "list", "ruleset"], capture_output=True, text=True, check=False).stdout

    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    code = ("from hostprint.engine.rstguard import RstGuard\nwith RstGuard(65000, 65010, ['eth0']) as g:\n"
            "    g.guard('2001:2:0:1::2', '198.18.200.2')\n    print(g.name, flush=True)\n    raise RuntimeError('boom')")
    r = subprocess.run(["ip", "netns", "exec", v6lab.a, sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 1 and "boom" in r.stderr and r.stdout.strip().startswith("hostprint_")
    assert r.stdout.strip() not in tables()
    code = ("import signal, time\nfrom hostprint.cli import _on_sigterm\nfrom hostprint.engine.rstguard import RstGuard\n"
            "signal.signal(signal.SIGTERM, _on_sigterm)\n"
            "with RstGuard(65000, 65010, ['eth0']) as g:\n    g.guard('2001:2:0:1::2')\n    print(g.name, flush=True)\n"
            "    time.sleep(30)\n")
    p = v6lab.spawn(v6lab.a, [sys.executable, "-c", code], stdout=subprocess.PIPE)
    name = p.stdout.readline().strip()
    ruleset = tables()
    assert name in ruleset and "2001:2:0:1::2" in ruleset and "ip6 saddr @targets6" in ruleset
    os.kill(p.pid, signal.SIGTERM)
    p.wait(timeout=10)
    deadline = time.monotonic() + 5
    while name in tables() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name not in tables()


# ----------------------------------------------------------------------------- bulk crafting


def test_numpy_ipv6_templates_match_the_struct_codec_byte_for_byte():
    from hostprint.engine.craft6 import Tcp6Template, Udp6Template

    rng = np.random.default_rng(7)
    n = 64
    dsts = [rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for _ in range(n - 2)] + [b"\xff" * 16, bytes(16)]
    hi, lo = halves(dsts)
    sport, dport = rng.integers(0, 65536, n), rng.integers(0, 65536, n)
    seq, ack = rng.integers(0, 2**32, n, dtype=np.uint64), rng.integers(0, 2**32, n, dtype=np.uint64)
    flow = rng.integers(0, 2**20, n)
    macs = np.tile(np.frombuffer(R_MAC, np.uint8), (n, 1))
    opts = [(P.OPT_MSS, 1440), (P.OPT_SACKOK, None), (P.OPT_TS, (0xFFFFFFFF, 0)), (P.OPT_NOP, None), (P.OPT_WS, 10)]
    tmpl = Tcp6Template(A_MAC, "2001:2:0:1::1", flags=P.SYN | P.ECE | P.CWR, window=65535, options=opts, hlim=255,
                        tc=0xFF, payload=b"\xff" * 33, urg=63477)
    buf = np.zeros((n, 256), np.uint8)
    tmpl.fill(buf, macs, hi, lo, sport, dport, seq, ack, flow)
    for i in range(n):
        ref = F.build_frame6(P.Ethernet(R_MAC, A_MAC), I6.IPv6(A, dsts[i], hlim=255, tc=0xFF, flow=int(flow[i])),
                              P.TCP(int(sport[i]), int(dport[i]), int(seq[i]), int(ack[i]), P.SYN | P.ECE | P.CWR, 65535, 63477,
                                    opts, b"\xff" * 33))
        assert bytes(buf[i, :tmpl.length]) == ref, i
    u = Udp6Template(A_MAC, "2001:2:0:1::1", payload=b"\x43" * 300, hlim=64, flow=0x12345)
    buf = np.zeros((n, 512), np.uint8)
    u.fill(buf, macs, hi, lo, sport, dport)
    for i in range(n):
        ref = F.build_frame6(P.Ethernet(R_MAC, A_MAC), I6.IPv6(A, dsts[i], flow=0x12345), P.UDP(int(sport[i]), int(dport[i]), b"\x43" * 300))
        assert bytes(buf[i, :u.length]) == ref, i
