"""Whole packets of either IP version: decoding a frame or a raw IP packet by its version, and
building IPv6 packets with their transport. Kept apart from the per-protocol codecs so that
packets.py (IPv4), ipv6.py (header and extension chain) and icmpv6.py depend on each other in one
direction only.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostprint.engine.checksum import checksum, pseudo_header_sum6
from hostprint.engine.icmpv6 import ICMPv6, decode_icmpv6
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, IPPROTO_NONE, IPv6, decode_ipv6
from hostprint.engine.packets import (
    ETH_P_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    L4,
    TCP,
    UDP,
    DecodeError,
    Ethernet,
    IPv4,
    Packet,
    decode_ethernet,
    decode_frame,
    decode_ip_packet,
    decode_tcp,
    decode_udp,
)


@dataclass
class AnyPacket(Packet):
    """A Packet whose IP header may be IPv6 (`ip` an ipv6.IPv6, `l4` TCP, UDP, ICMPv6 or bytes)."""

    @property
    def icmp6(self) -> ICMPv6 | None:
        return self.l4 if isinstance(self.l4, ICMPv6) else None


def decode_frame_any(buf: bytes | memoryview, ts: float | None = None) -> AnyPacket:
    """ARP, IPv4 and IPv6 frames decoded."""
    eth, off = decode_ethernet(buf)
    if eth.type == ETH_P_IPV6:
        ip6, l6 = decode_ip6_packet(buf, off)
        return AnyPacket(eth, ip=ip6, l4=l6, ts=ts)  # type: ignore[arg-type]
    p = decode_frame(buf, ts)
    return AnyPacket(p.eth, arp=p.arp, ip=p.ip, l4=p.l4, ts=ts)


def decode_ip_any(buf: bytes | memoryview, off: int = 0) -> tuple[IPv4 | IPv6, L4 | ICMPv6]:
    """An IPv4 or IPv6 packet without link header (raw-IP captures, raw sockets), by its version."""
    if len(buf) - off < 1:
        raise DecodeError("empty IP packet")
    if buf[off] >> 4 == 6:
        return decode_ip6_packet(buf, off)
    return decode_ip_packet(buf, off)



def decode_ip6_packet(buf: bytes | memoryview, off: int = 0) -> tuple[IPv6, L4 | ICMPv6]:
    """The header and its transport: TCP, UDP, ICMPv6, or the raw bytes for fragments (not
    reassembled, as for IPv4) and anything else."""
    ip, poff, end = decode_ipv6(buf, off)
    frag = ip.fragment()
    if frag is not None and (frag.offset or frag.more):
        return ip, bytes(buf[poff:end])
    if ip.proto == IPPROTO_TCP:
        return ip, decode_tcp(buf, poff, end)
    if ip.proto == IPPROTO_UDP:
        return ip, decode_udp(buf, poff, end)
    if ip.proto == IPPROTO_ICMPV6:
        return ip, decode_icmpv6(buf, poff, end)
    return ip, bytes(buf[poff:end])


def build_ip6(ip: IPv6, l4: object) -> bytes:
    """An IPv6 packet with correct lengths and transport checksum (unless fixed values were set).
    The checksum uses the final destination when a routing header names one (RFC 8200 §8.1);
    `ip.proto` None is filled in from the transport."""
    dst = ip.final_dst()
    if isinstance(l4, (TCP, UDP)):
        body = l4.encode(ip.src, dst)
        proto = IPPROTO_TCP if isinstance(l4, TCP) else IPPROTO_UDP
    elif isinstance(l4, ICMPv6):
        body = l4.encode(ip.src, dst)
        proto = IPPROTO_ICMPV6
    else:
        body = bytes(l4)  # type: ignore[call-overload]
        proto = IPPROTO_NONE
    if ip.proto is None:
        ip = IPv6(ip.src, ip.dst, proto, ip.hlim, ip.tc, ip.flow, ip.ext, ip.plen, ip.nh, ip.version)
    return ip.encode(len(body)) + body


def build_frame6(eth: Ethernet, ip: IPv6, l4: object) -> bytes:
    return Ethernet(eth.dst, eth.src, ETH_P_IPV6).encode() + build_ip6(ip, l4)


def transport_checksum_ok(ip: IPv6, segment: bytes) -> bool:
    """Whether a TCP/UDP/ICMPv6 segment's checksum verifies against this header (tests; replies
    from veth may carry partial checksums, so receivers do not call this)."""
    return checksum(segment, pseudo_header_sum6(ip.src, ip.final_dst(), ip.proto or 0, len(segment))) == 0
