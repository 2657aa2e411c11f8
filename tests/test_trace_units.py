"""--packet-trace lines (engine/trace.py) and -f fragments (engine/fragment.py) on bytes: frames
our codecs build, frames Linux sent (captured in the IPv6 lab, tests/test_ipv6_engine.py), each
checked against scapy's reading of the same bytes (an independent decoder)."""

from __future__ import annotations

import re
import socket
import struct

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from test_ipv6_engine import CAPTURES, FRAG_FIRST

from conftest import usage_error
from hostprint.engine import packets as P
from hostprint.engine.craft import TcpTemplate
from hostprint.engine.fragment import fragment_frame, fragment_rows
from hostprint.engine.frames import build_frame6
from hostprint.engine.ipv6 import Fragment
from hostprint.engine.ipv6 import IPv6 as IP6
from hostprint.engine.trace import PacketTracer, describe

S, D = "198.18.0.1", "198.18.0.10"
S6, D6 = "2001:2::1", "2001:2::10"
ETH = P.Ethernet(b"\x02\0\0\0\0\x0a", b"\x02\0\0\0\0\x01", P.ETH_P_IP)
ETH6 = P.Ethernet(b"\x02\0\0\0\0\x0a", b"\x02\0\0\0\0\x01", P.ETH_P_IPV6)


def v4(l4, proto: int, **kw) -> bytes:
    return P.build_frame(ETH, P.IPv4(socket.inet_aton(S), socket.inet_aton(D), proto, **kw), l4)


def v6(l4, proto: int, hlim: int = 64) -> bytes:
    return build_frame6(ETH6, IP6(socket.inet_pton(socket.AF_INET6, S6), socket.inet_pton(socket.AF_INET6, D6), proto,
                                  hlim), l4)


def test_tcp_lines_are_nmaps():
    syn = v4(P.TCP(64555, 22, 2081664017, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)]), P.IPPROTO_TCP, ttl=52, id=34586)
    # nmap 7.93's own line for this probe (lab, side by side), but for the time
    assert describe(syn) == ("TCP 198.18.0.1:64555 > 198.18.0.10:22 S ttl=52 id=34586 iplen=44  seq=2081664017 "
                             "win=1024 <mss 1460>")
    xmas = v4(P.TCP(47609, 22, 3582615650, 0, P.FIN | P.PSH | P.URG, 1024), P.IPPROTO_TCP, ttl=44, id=31500)
    assert describe(xmas) == "TCP 198.18.0.1:47609 > 198.18.0.10:22 FPU ttl=44 id=31500 iplen=40  seq=3582615650 win=1024 "
    ack = v4(P.TCP(37374, 22, 0, 77, P.ACK, 1024), P.IPPROTO_TCP, ttl=41, id=24135)
    assert describe(ack).endswith(" A ttl=41 id=24135 iplen=40  seq=0 ack=77 win=1024 ")  # ack= shown (our cookie)
    opts = [(P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (5, 0)), (P.OPT_NOP, None), (P.OPT_WS, 7)]
    sa = v4(P.TCP(22, 40000, 9, 10, P.SYN | P.ACK, 64240, options=opts), P.IPPROTO_TCP)
    assert describe(sa).endswith("SA ttl=64 id=0 iplen=60  seq=9 ack=10 win=64240 <mss 1460,sackOK,timestamp 5 0,nop,wscale 7>")
    syn6 = v6(P.TCP(63443, 22, 2538969082, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)]), P.IPPROTO_TCP, 255)
    assert describe(syn6) == ("TCP 2001:2::1:63443 > 2001:2::10:22 S hopl=255 flow=0 payloadlen=24 seq=2538969082 "
                              "win=1024 <mss 1460>")


def test_icmp_udp_arp_lines_are_nmaps():
    echo = v4(P.ICMP(P.ICMP_ECHO, 0, 60318, 0), P.IPPROTO_ICMP, ttl=43, id=5376)
    assert describe(echo) == ("ICMP [198.18.0.1 > 198.18.0.10 Echo request (type=8/code=0) id=60318 seq=0] "
                              "IP [ttl=43 id=5376 iplen=28 ]")
    ts = v4(P.ICMP(P.ICMP_TSTAMP, 0, 43118, 0), P.IPPROTO_ICMP, ttl=54, id=40253)
    assert describe(ts) == ("ICMP [198.18.0.1 > 198.18.0.10 Timestamp request (type=13/code=0) id=43118 seq=0 orig=0 "
                            "recv=0 trans=0] IP [ttl=54 id=40253 iplen=40 ]")
    mask = v4(P.ICMP(P.ICMP_MASKREQ, 0, 21019, 0), P.IPPROTO_ICMP, ttl=49, id=42391)
    assert describe(mask) == ("ICMP [198.18.0.1 > 198.18.0.10 Address mask request (type=17/code=0) id=21019 seq=0 "
                              "mask=0.0.0.0] IP [ttl=49 id=42391 iplen=32 ]")
    udp = v4(P.UDP(41615, 40125, b""), P.IPPROTO_UDP, ttl=48, id=1284)
    assert describe(udp) == "UDP 198.18.0.1:41615 > 198.18.0.10:40125 ttl=48 id=1284 iplen=28 "
    probe = P.build_ip(P.IPv4(socket.inet_aton(S), socket.inet_aton(D), P.IPPROTO_UDP, id=9), P.UDP(1, 161, b""))
    unreach = P.build_frame(ETH, P.IPv4(socket.inet_aton(D), socket.inet_aton(S), P.IPPROTO_ICMP, id=7),
                            P.ICMP(3, 3, quoted=probe))
    assert describe(unreach) == ("ICMP [198.18.0.10 > 198.18.0.1 Port 161 unreachable (type=3/code=3) ] "
                                 "IP [ttl=64 id=7 iplen=56 ]")
    lab_link = P.Ethernet(b"\xff" * 6, b"\x02\0\0\0\0\x01", P.ETH_P_ARP).encode()
    who = lab_link + P.ARP(1, b"\x02\0\0\0\0\x01", socket.inet_aton(S), b"\0" * 6, socket.inet_aton(D)).encode()
    assert describe(who) == "ARP who-has 198.18.0.10 tell 198.18.0.1"
    reply = lab_link + P.ARP(2, bytes.fromhex("02687012000a"), socket.inet_aton(D), b"\0" * 6, socket.inet_aton(S)).encode()
    assert describe(reply) == "ARP reply 198.18.0.10 is-at 02:68:70:12:00:0A"


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_linux_frames_read_as_scapy_reads_them(name):
    """Frames a Linux kernel sent: the fields of each line are the ones scapy finds."""
    fr = CAPTURES[name]
    line = describe(fr)
    pkt = Ether(fr)
    ip = pkt[IPv6]
    assert f"hopl={ip.hlim} flow={ip.fl:x} payloadlen={ip.plen}" in line
    assert f"{ip.src}" in line and f"{ip.dst}" in line
    if pkt.haslayer(TCP):
        t = pkt[TCP]
        assert line.startswith(f"TCP {ip.src}:{t.sport} > {ip.dst}:{t.dport} {t.flags} ") and f"seq={t.seq}" in line
        assert f"win={t.window}" in line
    elif pkt.haslayer(IPv6ExtHdrFragment):
        f = pkt[IPv6ExtHdrFragment]
        assert f"frag off={f.offset * 8}{' MF' if f.m else ''} fragid={f.id}" in line
    elif ip.nh == 58:
        assert line.startswith(f"ICMPv6 (58) {ip.src} > {ip.dst} (type={bytes(ip.payload)[0]}/code={bytes(ip.payload)[1]})")


def test_ipv4_fragments_are_nmaps_and_reassemble():
    """-f: 8-byte pieces of the IP payload, MF on all but the last, the probe's IP ID on each,
    each header's own checksum (scapy verifies them), and the pieces give back the segment."""
    tcp = P.TCP(40000, 22, 123456, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)])
    whole = v4(tcp, P.IPPROTO_TCP, ttl=40, id=77)
    frags = fragment_frame(whole)
    assert len(frags) == 3
    data = b""
    for i, fr in enumerate(frags):
        p = Ether(fr)[IP]
        assert (p.id, p.ttl, p.frag, bool(p.flags.MF), p.len) == (77, 40, i, i < 2, 28)
        rebuilt = p.copy()
        del rebuilt.chksum  # scapy computes it again
        assert IP(bytes(rebuilt)).chksum == p.chksum
        data += bytes(p.payload)
    assert data == whole[34:]
    lines = [describe(f) for f in frags]
    assert lines == ["TCP 198.18.0.1:40000 > 198.18.0.10:22 ttl=40 id=77 iplen=28 frag off=0 MF  seq=123456",
                     "IP 198.18.0.1 > 198.18.0.10 TCP ttl=40 id=77 iplen=28 frag off=8 MF",
                     "IP 198.18.0.1 > 198.18.0.10 TCP ttl=40 id=77 iplen=28 frag off=16"]
    # --mtu 16: two pieces, 16 and 8 bytes
    assert [len(f) - 34 for f in fragment_frame(whole, 16)] == [16, 8]
    # the same pieces as a hand-built fragment train (packets.IPv4 with mf/frag)
    body = tcp.encode(socket.inet_aton(S), socket.inet_aton(D))
    ref = [v4(body[o:o + 8], P.IPPROTO_TCP, ttl=40, id=77, mf=o + 8 < len(body), frag=o // 8) for o in range(0, 24, 8)]
    assert frags == ref


def test_ipv4_fragment_checksums_verify():
    whole = v4(P.UDP(1234, 53, b"hello world, 17b"), P.IPPROTO_UDP, ttl=33, id=4242)
    for fr in fragment_frame(whole):
        hdr = fr[14:34]
        s = sum(struct.unpack("!10H", hdr))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        assert s == 0xFFFF


def test_ipv6_fragments_use_the_fragment_header():
    tcp = P.TCP(40000, 22, 123456, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)])
    whole = v6(tcp, P.IPPROTO_TCP)
    frags = fragment_frame(whole)
    src, dst = socket.inet_pton(socket.AF_INET6, S6), socket.inet_pton(socket.AF_INET6, D6)
    body = tcp.encode(src, dst)
    ref = [build_frame6(ETH6, IP6(src, dst, P.IPPROTO_TCP, 64, ext=[Fragment(o // 8, o + 8 < 24, 123456)]),
                        body[o:o + 8]) for o in range(0, 24, 8)]
    assert frags == ref
    for i, fr in enumerate(frags):
        f = Ether(fr)[IPv6ExtHdrFragment]
        assert (f.offset, f.m, f.id, f.nh) == (i, i < 2, 123456, 6)


def test_bulk_rows_fragment_like_single_frames():
    """The numpy path (-f on -sS rows) cuts exactly as fragment_frame does, probe after probe."""
    t = TcpTemplate(b"\x02\0\0\0\0\x01", S, flags=P.SYN, options=[(P.OPT_MSS, 1460)], ttl=64)
    n = 5
    buf = np.zeros((n, 128), np.uint8)
    macs = np.tile(np.frombuffer(b"\x02\0\0\0\0\x0a", np.uint8), (n, 1))
    dst = np.array([P.ip_to_int(D) + i for i in range(n)], np.uint64)
    sport = np.arange(40000, 40000 + n, dtype=np.uint64)
    dport = np.arange(20, 20 + n, dtype=np.uint64)
    seq = np.arange(1000, 1000 + n, dtype=np.uint64) * 7919
    t.fill(buf, macs, dst, sport, dport, seq, np.zeros(n, np.uint64), seq & 0xFFFF)
    out = np.zeros((3 * n, 128), np.uint8)
    lens = fragment_rows(buf, n, t.length, out, 8)
    assert lens.tolist() == [42] * 3 * n
    rows = [out[i, :ln].tobytes() for i, ln in enumerate(lens.tolist())]
    assert rows == [f for i in range(n) for f in fragment_frame(buf[i, :t.length].tobytes())]


def test_fragment_frame_leaves_what_fits_and_other_frames():
    echo = v4(P.ICMP(P.ICMP_ECHO, 0, 1, 2), P.IPPROTO_ICMP)
    assert fragment_frame(echo) == [echo]  # 8 bytes of ICMP: one piece, nothing to cut
    arp = P.Ethernet(b"\xff" * 6, b"\2" * 6, P.ETH_P_ARP).encode() + bytes(28)
    assert fragment_frame(arp) == [arp]
    with pytest.raises(ValueError):
        fragment_frame(v4(P.UDP(1, 2, bytes(40)), P.IPPROTO_UDP), 12)


def test_tracer_lines_are_whole_and_timed():
    out: list[str] = []
    tr = PacketTracer(out.append)
    tr.ours = frozenset({socket.inet_aton(S)})
    tr.sent(v4(P.ICMP(P.ICMP_ECHO, 0, 1, 2), P.IPPROTO_ICMP))
    other = P.Ethernet(b"\xff" * 6, b"\2" * 6, P.ETH_P_ARP).encode() + P.ARP(
        1, b"\2" * 6, socket.inet_aton("198.18.0.20"), b"\0" * 6, socket.inet_aton("198.18.0.30")).encode()
    tr.rcvd(other)  # ARP between two other hosts: not ours, not printed
    buf = np.zeros((2, 64), np.uint8)
    for i in range(2):
        fr = v4(P.UDP(1000 + i, 53, b""), P.IPPROTO_UDP)
        buf[i, :len(fr)] = np.frombuffer(fr, np.uint8)
    tr.sent_rows(buf, 0, 2, 42)
    tr.sent_rows(buf, 1, 2, np.array([42, 42]))
    assert len(out) == 4
    assert all(re.fullmatch(r"SENT \(\d+\.\d{4}s\) \S.*", ln) for ln in out)
    assert [ln.split(") ", 1)[1].split()[1] for ln in out[1:]] == ["198.18.0.1:1000", "198.18.0.1:1001", "198.18.0.1:1001"]


def test_scapy_reads_our_arp_and_fragment_first_piece():
    """A sanity check of the comparisons above: scapy sees the kernel's first IPv6 fragment."""
    assert Ether(FRAG_FIRST).haslayer(IPv6ExtHdrFragment)
    assert describe(FRAG_FIRST).startswith("ICMPv6 (58) ") and "frag off=0 MF" in describe(FRAG_FIRST)
    assert ARP and ICMP and UDP  # imported for the readers of these tests


def test_mtu_and_f_flags():
    from hostprint.cli import build_parser
    from hostprint.commands.scan import apply_habits
    from hostprint.engine.rate import template
    from hostprint.probes.options import ScanOptions

    def opts(*argv: str) -> ScanOptions:
        args = build_parser().parse_args(["scan", *argv, D])
        o = ScanOptions(template(3))
        apply_habits(args, o)
        return o

    assert (opts("-f").fragment, opts("-f").frag_size) == (True, 8)
    assert opts("-ff").frag_size == 16 and opts("--mtu", "24").frag_size == 24
    assert not opts().fragment
    for bad in ("12", "0", "x", "2000"):
        assert usage_error(opts, "--mtu", bad).startswith(f"bad --mtu '{bad}'")


def test_describe_never_raises_on_cut_or_mangled_frames():
    """The tracer runs before the scans' handlers on the receive path: any frame must give a line."""
    import random

    frames = [v4(P.TCP(1, 2, 3, 4, P.SYN, 5, options=[(P.OPT_MSS, 1460), (P.OPT_WS, 7)]), P.IPPROTO_TCP),
              v4(P.ICMP(P.ICMP_TSTAMP, 0, 1, 2), P.IPPROTO_ICMP), v4(P.UDP(1, 2, b"xyz"), P.IPPROTO_UDP),
              v6(P.TCP(1, 2, 3, 4, P.SYN, 5), P.IPPROTO_TCP), *CAPTURES.values(),
              *fragment_frame(v6(P.UDP(1, 2, bytes(30)), P.IPPROTO_UDP))]
    rnd = random.Random(14)
    n = 0
    for fr in frames:
        for cut in range(len(fr) + 1):
            assert isinstance(describe(fr[:cut]), str)
            n += 1
        for _ in range(300):
            b = bytearray(fr)
            for _ in range(rnd.randint(1, 6)):
                b[rnd.randrange(14, len(b))] = rnd.randrange(256)
            assert isinstance(describe(bytes(b)), str)
            n += 1
    assert n > 5000
