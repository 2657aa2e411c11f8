"""The user-space rewrites of the scrubber: what nft cannot do in the kernel. Pure functions from
one IPv4 or IPv6 packet (as NFQUEUE hands it over, IP header first) to the packet to send instead.

- TCP SYN (either direction) and SYN-ACK: every option but MSS removed and the rest laid out one
  way (MSS first, padded with NOPs to a 4-byte boundary), MSS set to the scrubber's value, ECE,
  CWR, the reserved bits, URG and the urgent pointer cleared, SYN payload (TCP Fast Open data)
  dropped, the window set to the scrubber's handshake window *when that is lower* than the stack's
  own. Never raised: the router's conntrack has recorded the real window, and a client that
  believed a larger one would send segments conntrack calls out of window.
  SYNPROXY's own SYN-ACK (window 0: the proxy takes no data before the server is there) keeps its
  window.
- RST: options, payload, ECE/CWR/URG and the reserved bits removed, window 0 (stacks differ in all of
  them: lwIP's RSTs carry window 0xFF7F, Linux's 0, some stacks echo data in their RSTs).
- ICMP errors (destination unreachable, time exceeded, parameter problem): the quote cut to the
  quoted IP header plus 8 bytes (RFC 792's minimum; Linux quotes up to 576 bytes, lwIP 8), the
  ICMP checksum recomputed.
- Every rewritten packet: IP ID random, DF cleared, TOS 0, TTL set (nft does the same to every packet
  afterwards; doing it here too keeps the queue's output right when nft's chain is absent).

IPv6 (the same queue hands over both families: the version nibble decides): the same TCP rewrite
when TCP follows the fixed header directly (a packet with extension headers passes unchanged: nft
drops what it must), the hop limit set, traffic class and flow label zeroed (Linux labels each flow
with a hash of its own, other stacks send 0: a stack feature), and ICMPv6 errors (destination
unreachable, packet too big, time exceeded, parameter problem; RFC 4443 §3) with the quote cut to
the quoted fixed header plus 8 bytes (RFC 4443 asks for "as much as possible" up to 1280 bytes:
Linux quotes that much, lwIP less), the ICMPv6 checksum recomputed over IPv6's pseudo-header.

Everything else comes back unchanged (None = "accept as it is").
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from hostprint.engine.checksum import checksum, pseudo_header_sum, pseudo_header_sum6

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
ICMP_ERRORS = (3, 11, 12)
ICMP6_ERRORS = (1, 2, 3, 4)
IP6_HDR = 40


@dataclass(frozen=True)
class Norm:
    ttl: int = 64
    mss: int = 1360
    window: int = 8192


def _mss_of(options: bytes) -> int | None:
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        ln = options[i + 1]
        if ln < 2 or i + ln > len(options):
            break
        if kind == 2 and ln == 4:
            return int(struct.unpack_from("!H", options, i + 2)[0])
        i += ln
    return None


def _ip_common(ip: bytearray, n: Norm) -> None:
    ip[1] = 0  # TOS/DSCP and ECN
    struct.pack_into("!H", ip, 4, int.from_bytes(os.urandom(2), "big"))
    ff = struct.unpack_from("!H", ip, 6)[0]
    struct.pack_into("!H", ip, 6, ff & ~0x4000)
    ip[8] = n.ttl


def _finish_ip(ip: bytearray) -> bytes:
    struct.pack_into("!H", ip, 2, len(ip))
    struct.pack_into("!H", ip, 10, 0)
    ihl = (ip[0] & 0xF) * 4
    struct.pack_into("!H", ip, 10, checksum(bytes(ip[:ihl])))
    return bytes(ip)


def _tcp_segment(seg: bytes, n: Norm) -> bytearray | None:
    """The TCP rewrite shared by both families; the checksum field left 0."""
    if len(seg) < 20:
        return None
    off = (seg[12] >> 4) * 4
    flags = seg[13]
    if off < 20 or len(seg) < off:
        return None
    if not flags & (SYN | RST):
        return None
    th = bytearray(seg[:20])
    opts = seg[20:off]
    payload = seg[off:]
    window = struct.unpack_from("!H", th, 14)[0]
    if flags & SYN:
        new_opts = b""
        if _mss_of(opts) is not None or flags & ACK == 0:
            new_opts = struct.pack("!BBH", 2, 4, n.mss)
        if window != 0:  # SYNPROXY's SYN-ACK keeps its 0
            window = min(window, n.window)
        payload = b""
        flags &= FIN | SYN | RST | PSH | ACK
        flags &= ~(FIN | RST | PSH)
    else:  # RST
        new_opts = b""
        window = 0
        payload = b""
        flags &= RST | ACK
    th[12] = ((20 + len(new_opts)) // 4) << 4  # data offset; reserved bits and NS cleared
    th[13] = flags
    struct.pack_into("!H", th, 14, window)
    struct.pack_into("!H", th, 16, 0)  # checksum: the caller's
    struct.pack_into("!H", th, 18, 0)  # urgent pointer
    return th + new_opts + payload


def _ip6(pkt: bytes, body: bytes, n: Norm) -> bytes:
    """A new IPv6 packet: the fixed header of `pkt` with traffic class and flow label 0, the hop
    limit set and the payload length of `body` (which follows the fixed header directly)."""
    ip = bytearray(pkt[:IP6_HDR])
    struct.pack_into("!I", ip, 0, 6 << 28)
    struct.pack_into("!H", ip, 4, len(body))
    ip[7] = n.ttl
    return bytes(ip) + body


def tcp6(pkt: bytes, n: Norm) -> bytes | None:
    seg = _tcp_segment(pkt[IP6_HDR:], n)
    if seg is None:
        return None
    ck = checksum(bytes(seg), pseudo_header_sum6(pkt[8:24], pkt[24:40], 6, len(seg)))
    struct.pack_into("!H", seg, 16, ck)
    return _ip6(pkt, bytes(seg), n)


def icmp6_error(pkt: bytes, n: Norm) -> bytes | None:
    quoted = pkt[IP6_HDR + 8:]
    if len(quoted) < IP6_HDR or quoted[0] >> 4 != 6:
        return None
    body = bytearray(pkt[IP6_HDR:IP6_HDR + 8]) + quoted[:IP6_HDR + 8]
    struct.pack_into("!H", body, 2, 0)
    struct.pack_into("!H", body, 2, checksum(bytes(body), pseudo_header_sum6(pkt[8:24], pkt[24:40], 58, len(body))))
    return _ip6(pkt, bytes(body), n)


def normalise6(pkt: bytes, n: Norm) -> bytes | None:
    """IPv6: TCP and ICMPv6 errors right after the fixed header; anything else unchanged."""
    if len(pkt) < IP6_HDR + 8:
        return None
    nh = pkt[6]
    if nh == 6:
        return tcp6(pkt, n)
    if nh == 58 and pkt[IP6_HDR] in ICMP6_ERRORS:
        return icmp6_error(pkt, n)
    return None


def tcp(pkt: bytes, n: Norm) -> bytes | None:
    ihl = (pkt[0] & 0xF) * 4
    seg = _tcp_segment(pkt[ihl:], n)
    if seg is None:
        return None
    ip = bytearray(pkt[:ihl])
    _ip_common(ip, n)
    src, dst = bytes(ip[12:16]), bytes(ip[16:20])
    struct.pack_into("!H", seg, 16, checksum(bytes(seg), pseudo_header_sum(src, dst, 6, len(seg))))
    ip += seg
    return _finish_ip(ip)


def icmp_error(pkt: bytes, n: Norm) -> bytes | None:
    ihl = (pkt[0] & 0xF) * 4
    if len(pkt) < ihl + 8 + 20:
        return None
    quoted = pkt[ihl + 8:]
    qihl = (quoted[0] & 0xF) * 4
    if quoted[0] >> 4 != 4 or qihl < 20:
        return None
    keep = quoted[:qihl + 8]
    body = bytearray(pkt[ihl:ihl + 8]) + keep
    struct.pack_into("!H", body, 2, 0)
    struct.pack_into("!H", body, 2, checksum(bytes(body)))
    ip = bytearray(pkt[:ihl])
    _ip_common(ip, n)
    ip += body
    return _finish_ip(ip)


def normalise(pkt: bytes, n: Norm) -> bytes | None:
    """The packet to send instead of `pkt`, or None to accept it unchanged."""
    if pkt and pkt[0] >> 4 == 6:
        return normalise6(pkt, n)
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    if struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF:  # a non-first fragment: nothing to rewrite
        return None
    proto = pkt[9]
    if proto == 6:
        return tcp(pkt, n)
    if proto == 1 and len(pkt) > (pkt[0] & 0xF) * 4 and pkt[(pkt[0] & 0xF) * 4] in ICMP_ERRORS:
        return icmp_error(pkt, n)
    return None
