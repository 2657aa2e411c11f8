"""Codecs, checksums, bulk crafting, cookies and BPF on bytes (no root needed).

The reference bytes below were captured in the lab from the host kernel (Linux 6.18): a SYN-ACK
from nginx's port 80 and an ICMP port unreachable, so decoding is checked against a real stack,
not only against our own encoder.
"""

from __future__ import annotations

import socket
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hostprint.engine import bpf
from hostprint.engine import packets as P
from hostprint.engine.checksum import checksum, inet_sum, pseudo_header_sum
from hostprint.engine.cookie import Cookie, FastCookie
from hostprint.engine.craft import TcpTemplate

# Linux 6.18 SYN-ACK from a listening port, captured on the lab scanner's interface, in answer to a
# SYN with MSS, SACK-permitted, TS, NOP, WS options (the TCP checksum is as the wire carried it).
LINUX_SYNACK = bytes.fromhex(
    "0a0224b1ae8dce87849073b908004500003c000040004006ae94c6120002c61200010050fde8b4a6809d000003e9"
    "a012fe888c560000020405b40402080ac92143f6000000010103030a"
)
# Linux 6.18 ICMP port unreachable for a UDP datagram to port 9999 (TOS 0xc0, quotes 28 bytes).
LINUX_PORT_UNREACH = bytes.fromhex(
    "0a0224b1ae8dce87849073b9080045c0003ac6a000004001273bc6120002c612000103038940000000004500001e"
    "004d00004011ee5ac6120001c6120002fde9270f000ae64f6869"
)


def valid_tcp_checksum(pkt: bytes) -> bool:
    ip, off, end = P.decode_ipv4(pkt)
    seg = pkt[off:end]
    return checksum(seg, pseudo_header_sum(ip.src, ip.dst, P.IPPROTO_TCP, len(seg))) == 0


def test_decode_real_linux_synack():
    p = P.decode_frame(LINUX_SYNACK)
    assert p.ip.ttl == 64 and p.ip.df and p.ip.id == 0
    t = p.tcp
    assert P.flags_str(t.flags) == "SA"
    assert t.window == 65160
    assert P.options_layout(t.options) == "MSTNW"
    assert t.mss == 1460 and t.wscale == 10
    assert t.timestamps == (0xC92143F6, 1)
    assert not t.opt_bad and t.opt_trailing == b""


def test_ip_header_checksum_of_real_packet_verifies():
    assert checksum(LINUX_SYNACK[14:34]) == 0


def test_decode_real_linux_port_unreachable():
    p = P.decode_frame(LINUX_PORT_UNREACH)
    assert p.ip.tos == 0xC0 and p.icmp.type == P.ICMP_UNREACH and p.icmp.code == 3
    qip, rest = p.icmp.quoted_packet()
    assert qip.proto == P.IPPROTO_UDP and qip.id == 77
    assert struct.unpack("!HH", rest[:4]) == (65001, 9999) and rest[8:] == b"hi"


def test_tcp_round_trip_all_options():
    opts = [(P.OPT_MSS, 1460), (P.OPT_NOP, None), (P.OPT_WS, 10), (P.OPT_SACKOK, None),
            (P.OPT_TS, (123456, 654321)), (P.OPT_SACK, ((1, 2),)), (30, b"\x01\x02\x03"), (P.OPT_EOL, None)]
    src, dst = socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2")
    tcp = P.TCP(40000, 80, 1, 2, P.SYN | P.ECE | P.CWR, 29200, 7, opts, b"data", reserved=1)
    raw = P.build_ip(P.IPv4(src, dst, ttl=55, id=999, df=True, tos=0x10), tcp)
    assert valid_tcp_checksum(raw)
    ip, l4 = P.decode_ip_packet(raw)
    assert (ip.ttl, ip.id, ip.df, ip.tos) == (55, 999, True, 0x10)
    assert l4.options[:7] == opts[:7]
    assert l4.options[7][0] == P.OPT_EOL
    assert l4.payload == b"data" and l4.urg == 7 and l4.reserved == 1
    assert P.flags_str(l4.flags) == "SEC"


def test_options_over_40_bytes_refused():
    import pytest

    with pytest.raises(ValueError, match="40"):
        P.TCP(options=[(P.OPT_SACK, ((1, 2), (3, 4), (5, 6), (7, 8))), (P.OPT_TS, (1, 2))]).encode(b"\0" * 4, b"\0" * 4)


def test_truncated_option_is_flagged_bad_and_trailing_kept():
    opts, bad, trailing = P.decode_tcp_options(b"\x02\x04\x05")
    assert bad and opts == []
    opts, bad, trailing = P.decode_tcp_options(b"\x01\x00\x07\x07")
    assert not bad and trailing == b"\x07\x07" and [k for k, _ in opts] == [P.OPT_NOP, P.OPT_EOL]
    opts, bad, _ = P.decode_tcp_options(b"\x08\x01")  # length 1 < 2
    assert bad


def test_icmp_kinds_round_trip():
    for m in (P.ICMP(P.ICMP_ECHO, 0, 7, 9, b"abc"), P.ICMP(P.ICMP_TSTAMP, 0, 1, 2, orig=3, recv=4, xmit=5),
              P.ICMP(P.ICMP_MASKREQ, 0, 1, 2, mask=socket.inet_aton("255.255.255.0"))):
        raw = m.encode()
        assert checksum(raw) == 0
        d = P.decode_icmp(raw)
        assert (d.type, d.id, d.seq) == (m.type, m.id, m.seq)
        assert (d.orig, d.recv, d.xmit, d.mask, d.data) == (m.orig, m.recv, m.xmit, m.mask, m.data)


def test_icmp_unreachable_quotes_the_probe():
    src, dst = socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2")
    probe = P.build_ip(P.IPv4(src, dst, P.IPPROTO_UDP, id=4242), P.UDP(61000, 53, b"x"))
    err = P.ICMP(P.ICMP_UNREACH, 3, quoted=probe[:28])
    q = P.decode_icmp(err.encode()).quoted_packet()
    assert q is not None
    qip, rest = q
    assert qip.id == 4242 and qip.dst == dst and struct.unpack("!HH", rest[:4]) == (61000, 53)


def test_arp_and_ethernet():
    a = P.ARP(1, b"\x02" * 6, socket.inet_aton("198.18.0.1"), b"\0" * 6, socket.inet_aton("198.18.0.2"))
    fr = P.Ethernet(b"\xff" * 6, b"\x02" * 6, P.ETH_P_ARP).encode() + a.encode()
    p = P.decode_frame(fr)
    assert p.arp == a and p.eth.type == P.ETH_P_ARP


def test_vlan_tag_skipped():
    inner = LINUX_SYNACK[14:]
    fr = LINUX_SYNACK[:12] + b"\x81\x00\x00\x05\x08\x00" + inner
    assert P.decode_frame(fr).tcp.window == 65160


def test_numpy_template_matches_struct_codec_byte_for_byte():
    src_mac, dst_mac = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
    tmpl = TcpTemplate(src_mac, "198.18.0.1", flags=P.SYN, window=1024, ttl=51, payload=b"xyz")
    n = 50
    rng = np.random.default_rng(1)
    dst = rng.integers(0, 2**32, n, dtype=np.uint64)
    sport = rng.integers(1024, 65536, n)
    dport = rng.integers(1, 65536, n)
    seq = rng.integers(0, 2**32, n, dtype=np.uint64)
    ack = rng.integers(0, 2**32, n, dtype=np.uint64)
    ipid = rng.integers(0, 65536, n)
    buf = np.zeros((n, 128), np.uint8)
    tmpl.fill(buf, np.tile(np.frombuffer(dst_mac, np.uint8), (n, 1)), dst, sport, dport, seq, ack, ipid)
    for i in range(n):
        ref = P.build_frame(P.Ethernet(dst_mac, src_mac), P.IPv4(socket.inet_aton("198.18.0.1"),
                            int(dst[i]).to_bytes(4, "big"), ttl=51, id=int(ipid[i])),
                            P.TCP(int(sport[i]), int(dport[i]), int(seq[i]), int(ack[i]), P.SYN, 1024,
                                  options=[(P.OPT_MSS, 1460)], payload=b"xyz"))
        assert bytes(buf[i, :tmpl.length]) == ref


@given(st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 1000))
def test_cookie_batch_equals_scalar(addr, dport, sport, salt):
    c = Cookie(0x1234567890ABCDEF)
    arr = c.batch(np.array([addr]), np.array([dport]), np.array([sport]), salt)
    assert int(arr[0]) == c(addr, dport, sport, salt)
    f = FastCookie(c, salt)
    hk = f.host_key(addr)
    assert int(f.batch(np.array([hk], np.uint64), np.array([dport]), np.array([sport]))[0]) == f.value(hk, dport, sport)


def test_cookie_depends_on_key_and_fields():
    a, b = Cookie(1), Cookie(2)
    assert a(1, 2, 3) != b(1, 2, 3)
    assert len({a(0xC6120002, p, 61000) for p in range(1000)}) > 990


def test_incremental_sum_equals_full_sum():
    data = bytes(range(200))
    assert inet_sum(data[:100]) + inet_sum(data[100:]) == inet_sum(data)


def test_bpf_filter_semantics():
    prog = bpf.receive_filter(["198.18.0.1"])
    to_us = LINUX_SYNACK[:30] + socket.inet_aton("198.18.0.1") + LINUX_SYNACK[34:]
    other = LINUX_SYNACK[:30] + socket.inet_aton("198.18.0.9") + LINUX_SYNACK[34:]
    arp = P.Ethernet(b"\xff" * 6, b"\x02" * 6, P.ETH_P_ARP).encode() + P.ARP().encode()
    assert bpf.run(prog, to_us) == len(to_us)
    assert bpf.run(prog, other) == 0
    assert bpf.run(prog, arp) == len(arp)
    assert bpf.run(prog, to_us, pkttype=bpf.PACKET_OUTGOING) == 0  # our own sent copy
    ipv6 = LINUX_SYNACK[:12] + b"\x86\xdd" + LINUX_SYNACK[14:]
    assert bpf.run(prog, ipv6) == 0
    any_ip = bpf.receive_filter([])
    assert bpf.run(any_ip, other) == len(other)


# ----------------------------------------------------------------------------- fuzzing

frames = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda b, i, v: b[:i] + bytes([v]) + b[i + 1:],
              st.just(LINUX_SYNACK), st.integers(0, len(LINUX_SYNACK) - 1), st.integers(0, 255)),
    st.builds(lambda n: LINUX_SYNACK[:n], st.integers(0, len(LINUX_SYNACK))),
)


@settings(max_examples=600, deadline=None)
@given(frames)
def test_decoder_raises_only_decode_error(fr):
    try:
        P.decode_frame(fr)
    except P.DecodeError:
        pass


@settings(max_examples=400, deadline=None)
@given(frames)
def test_scan_receivers_never_raise(fr):
    """The per-frame handlers of the scanners see raw frames from the wire: nothing may escape."""
    from hostprint.engine.rate import template
    from hostprint.probes.tcpscan import TcpScan

    s = TcpScan.__new__(TcpScan)
    s.by_addr = {0xC6120014: type("S", (), {"hkey": 1, "state": np.zeros(3, np.uint8), "ttl": np.zeros(3, np.uint8), "window": {}})()}
    s.sport_lo, s.sport_hi = 0, 65535
    s.pos_list = [0] * 65536
    s.cookie = FastCookie(Cookie(5))
    from hostprint.probes.tcpscan import KINDS, ScanStats
    s.kind = KINDS["syn"]
    s.stats = ScanStats()
    s.srtt, s.rttvar, s.sent_at_ns, s.last_reply, s.timing = None, 0.0, 0, 0.0, template(4)
    s._on_frame(0, memoryview(fr))


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=20))
def test_vectorised_block_receiver_never_raises(batch):
    """The bulk path reads whole ring blocks with numpy fancy indexing: truncated and garbage
    frames must be skipped, never read out of bounds or raise."""
    from conftest import bare_tcp_scan, feed_block

    s = bare_tcp_scan(np.array([0xC6120014], np.uint64), np.array([0], np.int64))
    feed_block(s, batch)


# ------------------------------------------------------------------ reply validation (engine/replies.py)


def _ip_frame(src: str, dst: str, l4, proto: int) -> bytes:
    return P.build_frame(P.Ethernet(b"\x02" * 6, b"\x02" * 6), P.IPv4(socket.inet_aton(src), socket.inet_aton(dst), proto), l4)


def test_reply_checks_accept_the_cookie_and_reject_forgeries():
    from hostprint.engine import replies as R

    ck = Cookie(1234)
    us, them = "198.18.0.1", "198.18.0.10"
    peer = socket.inet_aton(them)
    c = ck(int.from_bytes(peer, "big"), 80, 40000, 4)
    synack = P.TCP(80, 40000, 777, (c + 1) & 0xFFFFFFFF, P.SYN | P.ACK, 1000)
    want = R.Want(frozenset({peer}), frozenset({P.IPPROTO_TCP}), (32768, 60999), errors=False, valid=R.acks_cookie(ck, 4))
    r = R.decode_reply(5, _ip_frame(them, us, synack, P.IPPROTO_TCP))
    assert r is not None and want.accepts(r) and (r.peer, r.our_port, r.their_port) == (peer, 40000, 80)
    forged = P.TCP(80, 40000, 777, (c + 2) & 0xFFFFFFFF, P.SYN | P.ACK, 1000)
    assert not want.accepts(R.decode_reply(5, _ip_frame(them, us, forged, P.IPPROTO_TCP)))
    assert not want.accepts(R.decode_reply(5, _ip_frame("198.18.0.11", us, synack, P.IPPROTO_TCP)))
    # an ICMP port unreachable is matched by the datagram it quotes: our cookie source port
    lo, hi = 32768, 60999
    sport = R.cookie_port(ck, lo, hi, peer, 53, 17)
    dgram = P.build_ip(P.IPv4(socket.inet_aton(us), peer, P.IPPROTO_UDP), P.UDP(sport, 53, b"x"))
    err = R.decode_reply(7, _ip_frame(them, us, P.ICMP(P.ICMP_UNREACH, 3, quoted=dgram[:28]), P.IPPROTO_ICMP))
    uwant = R.Want(frozenset({peer}), frozenset({P.IPPROTO_UDP}), (lo, hi), valid=R.port_is_cookie(ck, lo, hi, 17))
    assert err is not None and err.error is not None and uwant.accepts(err) and err.their_port == 53
    wrong = P.build_ip(P.IPv4(socket.inet_aton(us), peer, P.IPPROTO_UDP), P.UDP(sport ^ 1, 53, b"x"))
    assert not uwant.accepts(R.decode_reply(7, _ip_frame(them, us, P.ICMP(P.ICMP_UNREACH, 3, quoted=wrong[:28]),
                                                          P.IPPROTO_ICMP)))
    # ICMP query replies by id/seq
    i, s = R.icmp_ident(ck, peer, 1)
    echo = R.decode_reply(9, _ip_frame(them, us, P.ICMP(P.ICMP_ECHOREPLY, 0, i, s, b""), P.IPPROTO_ICMP))
    ewant = R.Want(frozenset({peer}), frozenset({P.IPPROTO_ICMP}), errors=False,
                   icmp_types=frozenset({P.ICMP_ECHOREPLY}), valid=R.ident_is_cookie(ck, 1))
    assert echo is not None and ewant.accepts(echo)
    assert not ewant.accepts(R.decode_reply(9, _ip_frame(them, us, P.ICMP(P.ICMP_ECHOREPLY, 0, i, s ^ 1, b""),
                                                         P.IPPROTO_ICMP)))


@settings(max_examples=400, deadline=None)
@given(frames)
def test_reply_dispatch_never_raises(fr):
    """Garbage from the wire goes through the one decoder every probe listens behind."""
    from hostprint.engine import replies as R

    seen = []
    handler = R.dispatch([(R.Want(valid=lambda r: True), seen.append), (R.Want(peers=frozenset({b"\x00" * 4})), seen.append)])
    handler(0, memoryview(fr))


def _tcp_frame(flags: int, options: bytes, v6: bool = False, ihl_words: int = 5) -> bytes:
    """Ethernet + IPv4 (or IPv6) + TCP with the given flags and options (no payload)."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 1, (5 + len(options) // 4) << 4, flags, 1024, 0, 0) + options
    if v6:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, b"\x20\x01\x00\x02" + bytes(12),
                         b"\x20\x01\x00\x02" + bytes(11) + b"\x01")
        return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip + tcp
    opts = bytes(4 * (ihl_words - 5))  # IP options (NOPs would be 1s; zeros are EOL: the length is what matters)
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl_words, 0, 20 + len(opts) + len(tcp), 1, 0, 64, 6, 0,
                     socket.inet_aton("198.18.0.2"), socket.inet_aton("198.18.0.1")) + opts
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def test_probe_filter_passes_nmap_t4_t6_and_keeps_bulk_acks_out():
    """The live probe-detection filter: nmap's T2-T7 options (WS 10, NOP, MSS 265, TS, SACK
    permitted: nmap's osscan2.cc prbOpts, which hostprint -O sends too) on a bare ACK (T4/T6)
    pass; an established ACK's options (timestamps; SACK blocks) never start with a window scale,
    so bulk traffic stays out. IPv4 with and without IP options, and IPv6."""
    from hostprint.engine.capture import live_filter, probe_filter

    t_opts = bytes.fromhex("03030a0102040109080affffffff000000000402")
    ts_ack = bytes.fromhex("0101080a0000000100000002")
    sack_ack = bytes.fromhex("0101050a0000000100000009")
    prog = probe_filter()
    for v6 in (False, True):
        for ihl in ((5,) if v6 else (5, 6)):
            def passes(flags: int, options: bytes, v6: bool = v6, ihl: int = ihl) -> bool:
                return bpf.run(prog, _tcp_frame(flags, options, v6, ihl)) > 0

            assert passes(0x10, t_opts), (v6, ihl)  # T4/T6
            assert passes(0x10, b""), (v6, ihl)  # ACK scan
            assert passes(0x02, t_opts) and passes(0x29, t_opts) and passes(0x00, t_opts)  # T2, T3/T7, NULL
            assert not passes(0x10, ts_ack), (v6, ihl)  # bulk ACK with timestamps
            assert not passes(0x10, sack_ack), (v6, ihl)
            assert not passes(0x10, ts_ack + sack_ack), (v6, ihl)
    assert bpf.run(live_filter(), _tcp_frame(0x10, t_opts)) == 0  # without detection: fingerprints only
