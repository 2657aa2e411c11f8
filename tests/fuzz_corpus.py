"""Seeds and generators shared by the decoder fuzz tests and bench/fuzz/run.py.

Seeds are well-formed frames of every kind the decoders know (real Linux captures from
test_packets.py and test_ipv6_engine.py, plus crafted ones with every extension header), so that
mutations start close to the paths where bugs hide: length fields, option lists, chains.
"""

from __future__ import annotations

import random
import socket
import struct

from hostprint.engine import frames as F
from hostprint.engine import icmpv6 as C6
from hostprint.engine import ipv6 as I6
from hostprint.engine import packets as P

A, R, B = I6.ip6_bytes("2001:2:0:1::1"), I6.ip6_bytes("2001:2:0:1::2"), I6.ip6_bytes("2001:2:0:2::2")
V4A, V4B = socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2")
ETH = P.Ethernet(b"\x02" * 6, b"\x04" * 6)


def seeds() -> list[bytes]:
    from test_ipv6_engine import CAPTURES, FRAG_FIRST, PACKET_TOO_BIG
    from test_packets import LINUX_PORT_UNREACH, LINUX_SYNACK

    out = [LINUX_SYNACK, LINUX_PORT_UNREACH, FRAG_FIRST, PACKET_TOO_BIG, *CAPTURES.values()]
    opts = [(P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (1, 2)), (P.OPT_NOP, None), (P.OPT_WS, 7),
            (P.OPT_SACK, ((1, 2),))]
    out.append(P.build_frame(ETH, P.IPv4(V4A, V4B, options=b"\x01\x01\x01\x00"), P.TCP(1, 2, options=opts, payload=b"p")))
    out.append(P.build_frame(ETH, P.IPv4(V4A, V4B, P.IPPROTO_UDP), P.UDP(1, 2, b"u" * 20)))
    for m in (P.ICMP(P.ICMP_ECHO, 0, 1, 2, b"e"), P.ICMP(P.ICMP_TSTAMP, 0, 1, 2), P.ICMP(P.ICMP_MASKREQ),
              P.ICMP(P.ICMP_UNREACH, 3, quoted=P.build_ip(P.IPv4(V4B, V4A, P.IPPROTO_UDP), P.UDP(9, 9))[:28])):
        out.append(P.build_frame(ETH, P.IPv4(V4A, V4B, P.IPPROTO_ICMP), m))
    out.append(ETH.encode()[:12] + b"\x08\x06" + P.ARP().encode())
    ext = [I6.HopByHop([(I6.OPT_ROUTER_ALERT, b"\0\0")]), I6.DestOpts([(0x1E, b"abc")]),
           I6.Routing.with_addresses([R, B]), I6.Fragment(ident=5), I6.RawExt(I6.IPPROTO_AH, bytes(14)), I6.DestOpts()]
    for l4 in (P.TCP(1, 2, options=opts), P.UDP(3, 4, b"x"), C6.echo_request(1, 2, b"y"),
               C6.neighbor_advertisement(R, b"\x02" * 6), C6.ICMPv6(C6.ROUTER_ADVERT, data=bytes(8), options=[(5, bytes(6))]),
               C6.ICMPv6(C6.REDIRECT, target=R, dest=B), C6.error(C6.DST_UNREACH, 4, F.build_ip6(I6.IPv6(R, A, ext=ext[:2]), P.UDP(5, 6)))):
        out.append(F.build_frame6(ETH, I6.IPv6(A, R, ext=ext), l4))
        out.append(F.build_frame6(ETH, I6.IPv6(A, R), l4))
    out.append(F.build_frame6(ETH, I6.IPv6(A, R, ext=[I6.Fragment(offset=9, more=True)]), b"frag"))
    return out


def mutate(rng: random.Random, buf: bytes, pool: list[bytes]) -> bytes:
    """One to four random edits: byte and bit flips, length-field hits, cuts, inserts, splices."""
    b = bytearray(buf)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if not b:
            b = bytearray(rng.randbytes(rng.randint(0, 64)))
        elif op < 0.3:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.45:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.6:  # length-ish fields of IPv4/IPv6/extension headers/ICMPv6 options
            i = rng.choice([16, 17, 18, 19, 20, 21, 54, 55, 56, 57, 62, 63, 70, 71, 78, 79, 86, 87] + [rng.randrange(len(b))])
            if i < len(b):
                b[i] = rng.choice([0, 1, 2, 0x3A, 0x2C, 0x3C, 0x2B, 0x33, 0x32, 0x3B, 0x06, 0x11, 0x7F, 0xFF, rng.randrange(256)])
        elif op < 0.75:
            del b[rng.randrange(len(b) + 1):]
        elif op < 0.88:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 24))
        else:
            other = rng.choice(pool)
            i, j = rng.randrange(len(b) + 1), rng.randrange(len(other) + 1)
            b = b[:i] + bytearray(other[j:])
    return bytes(b)


def random_chain(rng: random.Random) -> bytes:
    """An IPv6 packet whose extension chain is built from random, often inconsistent, headers:
    wrong next-header values (loops back to hop-by-hop), lengths that lie, odd AH sizes, routing
    headers with partial addresses, fragments; then a random cut and payload length."""
    ext: list = []
    for _ in range(rng.randint(0, 40)):
        k = rng.random()
        nh = rng.choice([None, None, 0, 43, 44, 50, 51, 59, 60, 6, 17, 58, rng.randrange(256)])
        if k < 0.25:
            opts = [(rng.randrange(256), rng.randbytes(rng.randint(0, 12))) for _ in range(rng.randint(0, 3))]
            ext.append((I6.HopByHop if k < 0.12 else I6.DestOpts)(opts, nh, rng.random() < 0.8))
        elif k < 0.45:
            ext.append(I6.Routing(rng.randrange(256), rng.randrange(256), rng.randbytes(rng.randint(0, 40)), nh))
        elif k < 0.65:
            ext.append(I6.Fragment(rng.randrange(8192), rng.random() < 0.5, rng.randrange(2**32), nh=nh))
        else:
            code = rng.choice(sorted(I6.EXT_HEADERS))
            ext.append(I6.RawExt(code, rng.randbytes(rng.randint(0, 30)), nh, rng.choice([None, rng.randrange(256)])))
    upper = rng.choice([6, 17, 58, 59, 0, rng.randrange(256)])
    l4 = rng.choice([b"", rng.randbytes(rng.randint(0, 60)), P.TCP(1, 2).encode(A, R), C6.echo_request(1, 1).encode(A, R)])
    ip = I6.IPv6(A, R, upper, ext=ext, plen=rng.choice([None, None, 0, rng.randrange(65536)]))
    pkt = ip.encode(len(l4)) + l4
    if rng.random() < 0.5:
        pkt = pkt[:rng.randrange(len(pkt) + 1)]
    return ETH.encode()[:12] + b"\x86\xdd" + pkt


def random_pcap(rng: random.Random, seeds_: list[bytes]) -> bytes:
    """A pcap or pcapng file image: valid structure with random records, then damaged at times."""
    pkts = [rng.choice(seeds_) for _ in range(rng.randint(0, 6))]
    if rng.random() < 0.5:
        e = rng.choice("<>")
        out = struct.pack(e + "IHHiIII", rng.choice([0xA1B2C3D4, 0xA1B23C4D]), rng.choice([2, 2, 2, 1]), 4, 0, 0,
                          rng.choice([65535, 0, 100]), rng.choice([1, 101, 113, 228, 229, 276, rng.randrange(300)]))
        for p in pkts:
            caplen = rng.choice([len(p)] * 6 + [rng.randrange(70000), 300000])
            out += struct.pack(e + "IIII", rng.randrange(2**32), rng.randrange(2**32), caplen, len(p)) + p
    else:
        def block(t: int, body: bytes, ln: int | None = None) -> bytes:
            body += b"\0" * (-len(body) % 4)
            n = 12 + len(body) if ln is None else ln
            return struct.pack("<II", t, n) + body + struct.pack("<I", n)

        out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        out += block(1, struct.pack("<HHI", rng.choice([1, 101, 229]), 0, 0)
                     + rng.choice([b"", struct.pack("<HHB3x", 9, 1, rng.randrange(256)) + b"\0" * 4, rng.randbytes(8)]))
        for p in pkts:
            kind = rng.random()
            if kind < 0.6:
                out += block(6, struct.pack("<IIIII", rng.choice([0, 0, 1]), rng.randrange(2**32), rng.randrange(2**32),
                                            rng.choice([len(p), rng.randrange(2000)]), len(p)) + p)
            elif kind < 0.75:
                out += block(3, struct.pack("<I", rng.choice([len(p), rng.randrange(2000)])) + p)
            elif kind < 0.85:
                out += block(3, b"", rng.choice([12, 16]))
            elif kind < 0.95:
                out += block(2, struct.pack("<HHIIII", 0, 0, 0, 0, len(p), len(p)) + p)
            else:
                out += block(rng.randrange(2**32), rng.randbytes(rng.randint(0, 20)))
    if rng.random() < 0.4:
        out = mutate(rng, out, seeds_)
    return out


# --------------------------------------------------------------------------- the harness


def decode_all(fr: bytes) -> int:
    """Every frame and header decoder on one buffer, at the offsets where each header would sit;
    returns how many refused it with DecodeError. Any other exception propagates: that is a bug."""
    from hostprint.engine import ndp

    refused = 0
    pkts = []
    for call in (
        lambda: pkts.append(P.decode_frame(fr)),
        lambda: pkts.append(F.decode_frame_any(fr)),
        lambda: F.decode_ip_any(fr[14:]),
        lambda: P.decode_ipv4(fr, 14),
        lambda: P.decode_ip_packet(fr, 14),
        lambda: I6.decode_ipv6(fr, 14),
        lambda: F.decode_ip6_packet(fr, 14),
        lambda: P.decode_tcp(fr, 34),
        lambda: P.decode_tcp(fr, 54, len(fr) - 1),
        lambda: P.decode_udp(fr, 34),
        lambda: P.decode_icmp(fr, 34),
        lambda: C6.decode_icmpv6(fr, 54),
        lambda: C6.decode_icmpv6(memoryview(fr), 62, len(fr)),
        lambda: P.decode_arp(fr, 14),
        lambda: P.decode_ethernet(memoryview(fr)),
    ):
        try:
            call()
        except P.DecodeError:
            refused += 1
    P.decode_tcp_options(fr[54:])
    I6.decode_options(fr[56:])
    C6.decode_nd_options(fr[78:])
    ndp.parse_na(fr)
    for p in pkts:
        p.version, p.tcp, p.udp, p.icmp, getattr(p, "icmp6", None)  # noqa: B018 - the accessors must not raise
        if p.tcp is not None:
            P.options_layout(p.tcp.options), P.flags_str(p.tcp.flags), p.tcp.mss, p.tcp.wscale, p.tcp.timestamps
        if p.icmp is not None:
            p.icmp.quoted_packet()
        m6 = getattr(p, "icmp6", None)
        if m6 is not None:
            m6.quoted_packet(), m6.lladdr(), m6.mtu
        if isinstance(p.ip, I6.IPv6):
            p.ip.final_dst(), p.ip.fragment(), p.ip.header_length
    return refused


def blocks_all(frames: list[bytes]) -> None:
    """The vectorised IPv6 block parsers over a ring made of `frames` (with the slack a real ring
    block has after its last frame). They must never raise nor read outside the buffer."""
    import numpy as np

    from hostprint.engine.ipv6_blocks import icmp6_frames, tcp6

    if not frames:
        return
    ring = np.frombuffer(b"".join(frames) + bytes(64), np.uint8)
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
    lens = np.array([len(f) for f in frames], np.int64)
    blk = tcp6(ring, starts, lens)
    assert (blk.tcp_off + 20 <= starts[blk.idx] + lens[blk.idx]).all()
    icmp6_frames(ring, starts, lens)


def capture_all(image: bytes, path: str) -> int:
    """Every packet of a capture file image through the reader and the frame decoder; returns the
    packets read. CaptureError (the reader's one error) is allowed; anything else is a bug."""
    from hostprint.engine import pcapfile

    with open(path, "wb") as f:
        f.write(image)
    n = 0
    try:
        for batch in pcapfile.read_batches(path, chunk=1024):
            assert all(x >= 0 for x in batch.lens) and all(s >= 0 for s in batch.starts)
            batch.ts_seconds(list(range(len(batch.starts))))
            for i, (s, ln) in enumerate(zip(batch.starts, batch.lens)):
                batch.ts_ns(i)
                decode_all(batch.buf[s: s + ln])
                n += 1
    except pcapfile.CaptureError:
        pass
    return n
