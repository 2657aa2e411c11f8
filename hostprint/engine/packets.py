"""Header codecs for Ethernet, ARP, IPv4, TCP (all options), UDP and ICMP.

Headers are plain dataclasses with `encode()` and a module-level `decode_*` that reads from any
buffer with precompiled `struct.Struct`s. Decoders raise only `DecodeError`, so a receiver needs one
`except` to survive anything the network sends. Fingerprinting needs the odd bits kept, not
normalised away: unknown TCP option kinds are kept as bytes, a truncated option list is flagged
(`TCP.opt_bad`), trailing bytes after the options (p0f's "opt+") are kept, and reserved bits and the
urgent pointer survive a round trip. Checksums are not verified on decode: locally generated
packets on veth carry partial (offloaded) checksums.
"""

from __future__ import annotations

import socket
import struct
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union, cast

from hostprint.engine.checksum import checksum, pseudo_header_sum

if typing.TYPE_CHECKING:  # both import this module
    pass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17

# TCP flags
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
FLAG_LETTERS = "FSRPAUEC"

# TCP option kinds (RFC 9293, 7323, 2018)
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WS, OPT_SACKOK, OPT_SACK, OPT_TS = 0, 1, 2, 3, 4, 5, 8

# ICMP types (RFC 792, 950)
ICMP_ECHOREPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIMXCEED = 0, 3, 8, 11
ICMP_TSTAMP, ICMP_TSTAMPREPLY, ICMP_INFO, ICMP_INFOREPLY = 13, 14, 15, 16
ICMP_MASKREQ, ICMP_MASKREPLY = 17, 18


class DecodeError(ValueError):
    """The bytes are not a well-formed header of the kind asked for."""


_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBH")
_ICMP_ECHO = struct.Struct("!HH")
_ICMP_TS = struct.Struct("!HHIII")
_ICMP_MASK = struct.Struct("!HH4s")


def mac_str(b: bytes) -> str:
    return ":".join("%02x" % x for x in b)


def mac_bytes(s: str) -> bytes:
    try:
        b = bytes(int(x, 16) for x in s.split(":"))
    except ValueError:
        raise DecodeError(f"bad MAC address {s!r}") from None
    if len(b) != 6:
        raise DecodeError(f"bad MAC address {s!r}")
    return b


def flags_str(flags: int) -> str:
    """nmap/p0f style letters, e.g. 'SA' for SYN+ACK."""
    return "".join(c for i, c in enumerate(FLAG_LETTERS) if flags >> i & 1)


# --------------------------------------------------------------------------- Ethernet / ARP


@dataclass
class Ethernet:
    dst: bytes = b"\xff" * 6
    src: bytes = b"\0" * 6
    type: int = ETH_P_IP

    def encode(self) -> bytes:
        return _ETH.pack(self.dst, self.src, self.type)


def decode_ethernet(buf: bytes | memoryview, off: int = 0) -> tuple[Ethernet, int]:
    """Returns the header and the offset of its payload (802.1Q tags are skipped)."""
    if len(buf) - off < 14:
        raise DecodeError("short Ethernet header")
    dst, src, typ = _ETH.unpack_from(buf, off)
    off += 14
    while typ in (0x8100, 0x88A8):
        if len(buf) - off < 4:
            raise DecodeError("short VLAN tag")
        typ = struct.unpack_from("!H", buf, off + 2)[0]
        off += 4
    return Ethernet(bytes(dst), bytes(src), typ), off


@dataclass
class ARP:
    op: int = 1  # 1 request, 2 reply
    sha: bytes = b"\0" * 6
    spa: bytes = b"\0" * 4
    tha: bytes = b"\0" * 6
    tpa: bytes = b"\0" * 4
    htype: int = 1
    ptype: int = ETH_P_IP

    def encode(self) -> bytes:
        return _ARP.pack(self.htype, self.ptype, 6, 4, self.op, self.sha, self.spa, self.tha, self.tpa)


def decode_arp(buf: bytes | memoryview, off: int = 0) -> ARP:
    if len(buf) - off < _ARP.size:
        raise DecodeError("short ARP packet")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, off)
    if hlen != 6 or plen != 4:
        raise DecodeError("ARP for a non-Ethernet/IPv4 pair")
    return ARP(op, bytes(sha), bytes(spa), bytes(tha), bytes(tpa), htype, ptype)


# --------------------------------------------------------------------------- IPv4


@dataclass
class IPv4:
    src: bytes = b"\0" * 4
    dst: bytes = b"\0" * 4
    proto: int = IPPROTO_TCP
    ttl: int = 64
    id: int = 0
    tos: int = 0
    df: bool = False
    mf: bool = False
    reserved: bool = False  # the "evil bit"; p0f quirk "0+" when set
    frag: int = 0
    options: bytes = b""
    total_length: int | None = None  # None = computed on encode
    csum: int | None = None  # None = computed on encode
    ihl: int | None = None

    @property
    def header_length(self) -> int:
        return 20 + len(self.options)

    def encode(self, payload_length: int) -> bytes:
        opts = self.options + b"\0" * (-len(self.options) % 4)
        ihl = (20 + len(opts)) // 4
        total = self.total_length if self.total_length is not None else ihl * 4 + payload_length
        ff = (self.reserved << 15) | (self.df << 14) | (self.mf << 13) | (self.frag & 0x1FFF)
        hdr = _IP.pack(0x40 | ihl, self.tos, total, self.id & 0xFFFF, ff, self.ttl, self.proto, 0, self.src, self.dst) + opts
        c = self.csum if self.csum is not None else checksum(hdr)
        return hdr[:10] + struct.pack("!H", c) + hdr[12:]


def decode_ipv4(buf: bytes | memoryview, off: int = 0) -> tuple[IPv4, int, int]:
    """Returns the header, the payload offset and the payload end (trimmed to total length)."""
    if len(buf) - off < 20:
        raise DecodeError("short IPv4 header")
    vihl, tos, total, ident, ff, ttl, proto, csum, src, dst = _IP.unpack_from(buf, off)
    if vihl >> 4 != 4:
        raise DecodeError("not IPv4")
    ihl = (vihl & 0xF) * 4
    if ihl < 20 or len(buf) - off < ihl:
        raise DecodeError("bad IPv4 header length")
    end = min(len(buf), off + total) if total >= ihl else len(buf)
    h = IPv4(
        bytes(src), bytes(dst), proto, ttl, ident, tos,
        bool(ff & 0x4000), bool(ff & 0x2000), bool(ff & 0x8000), ff & 0x1FFF,
        bytes(buf[off + 20: off + ihl]), total, csum, ihl,
    )
    return h, off + ihl, end


# --------------------------------------------------------------------------- TCP and options

TCPOption = tuple[int, object]  # (kind, value); value None, int, tuple or raw bytes for unknown kinds


def encode_tcp_options(opts: list[TCPOption]) -> bytes:
    """Encode options as given (no reordering, no implicit padding beyond a 4-byte boundary)."""
    out = bytearray()
    for kind, val in opts:
        if kind in (OPT_EOL, OPT_NOP):
            out.append(kind)
        elif kind == OPT_MSS:
            out += struct.pack("!BBH", 2, 4, val)
        elif kind == OPT_WS:
            out += struct.pack("!BBB", 3, 3, val)
        elif kind == OPT_SACKOK:
            out += b"\x04\x02"
        elif kind == OPT_SACK:
            blocks = list(cast("list[tuple[int, int]]", val))
            out += struct.pack("!BB", 5, 2 + 8 * len(blocks))
            for left, right in blocks:
                out += struct.pack("!II", left, right)
        elif kind == OPT_TS:
            tsval, tsecr = cast("tuple[int, int]", val)
            out += struct.pack("!BBII", 8, 10, tsval, tsecr)
        else:
            raw = bytes(cast(bytes, val or b""))
            out += struct.pack("!BB", kind, 2 + len(raw)) + raw
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


def decode_tcp_options(raw: bytes | memoryview) -> tuple[list[TCPOption], bool, bytes]:
    """Returns (options, bad, trailing): `bad` when a length runs past the end or is too small
    (p0f's "bad" quirk); `trailing` = non-zero bytes after EOL (p0f's "opt+")."""
    opts: list[TCPOption] = []
    i, n = 0, len(raw)
    raw = bytes(raw)
    while i < n:
        kind = raw[i]
        if kind == OPT_EOL:
            opts.append((OPT_EOL, None))
            rest = raw[i + 1:]
            return opts, False, rest if any(rest) else b""
        if kind == OPT_NOP:
            opts.append((OPT_NOP, None))
            i += 1
            continue
        if i + 1 >= n:
            return opts, True, b""
        ln = raw[i + 1]
        if ln < 2 or i + ln > n:
            return opts, True, b""
        body = raw[i + 2: i + ln]
        if kind == OPT_MSS and ln == 4:
            opts.append((kind, struct.unpack("!H", body)[0]))
        elif kind == OPT_WS and ln == 3:
            opts.append((kind, body[0]))
        elif kind == OPT_SACKOK and ln == 2:
            opts.append((kind, None))
        elif kind == OPT_SACK and (ln - 2) % 8 == 0:
            opts.append((kind, tuple(struct.unpack_from("!II", body, j) for j in range(0, ln - 2, 8))))
        elif kind == OPT_TS and ln == 10:
            opts.append((kind, struct.unpack("!II", body)))
        else:
            opts.append((kind, body))
        i += ln
    return opts, False, b""


def options_layout(opts: list[TCPOption]) -> str:
    """Option kinds as letters (M, N, W, S, T, E, K=SACK, ?n for unknown), the layout key used by
    Hershel ("MNWST") and as a compact fingerprint feature."""
    letters = {OPT_MSS: "M", OPT_NOP: "N", OPT_WS: "W", OPT_SACKOK: "S", OPT_TS: "T", OPT_EOL: "E", OPT_SACK: "K"}
    return "".join(letters.get(k, "?%d" % k) for k, _ in opts)


@dataclass
class TCP:
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = SYN
    window: int = 0
    urg: int = 0
    options: list[TCPOption] = field(default_factory=list)
    payload: bytes = b""
    reserved: int = 0  # the 4 reserved bits (incl. AE/NS)
    csum: int | None = None
    opt_bad: bool = False
    opt_trailing: bytes = b""
    data_offset: int | None = None

    def encode(self, src: bytes, dst: bytes) -> bytes:
        opts = encode_tcp_options(self.options) if self.options else b""
        if len(opts) > 40:
            raise ValueError(f"TCP options take {len(opts)} bytes; at most 40 fit in a header")
        off = (20 + len(opts)) // 4
        hdr = _TCP.pack(
            self.sport, self.dport, self.seq & 0xFFFFFFFF, self.ack & 0xFFFFFFFF,
            off << 4 | (self.reserved & 0xF), self.flags & 0xFF, self.window, 0, self.urg,
        ) + opts
        seg = hdr + self.payload
        c = self.csum if self.csum is not None else checksum(seg, pseudo_header_sum(src, dst, IPPROTO_TCP, len(seg)))
        return seg[:16] + struct.pack("!H", c) + seg[18:]

    def option(self, kind: int) -> object | None:
        for k, v in self.options:
            if k == kind:
                return v if v is not None else True
        return None

    @property
    def mss(self) -> int | None:
        v = self.option(OPT_MSS)
        return v if isinstance(v, int) and v is not True else None

    @property
    def wscale(self) -> int | None:
        v = self.option(OPT_WS)
        return v if isinstance(v, int) and v is not True else None

    @property
    def timestamps(self) -> tuple[int, int] | None:
        v = self.option(OPT_TS)
        return v if isinstance(v, tuple) else None  # type: ignore[return-value]


def decode_tcp(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> TCP:
    end = len(buf) if end is None else end
    if end - off < 20:
        raise DecodeError("short TCP header")
    sport, dport, seq, ack, offres, flags, win, csum, urg = _TCP.unpack_from(buf, off)
    doff = (offres >> 4) * 4
    if doff < 20 or off + doff > end:
        raise DecodeError("bad TCP data offset")
    opts, bad, trailing = decode_tcp_options(buf[off + 20: off + doff]) if doff > 20 else ([], False, b"")
    return TCP(sport, dport, seq, ack, flags, win, urg, opts, bytes(buf[off + doff: end]), offres & 0xF, csum, bad, trailing, doff)


# --------------------------------------------------------------------------- UDP


@dataclass
class UDP:
    sport: int = 0
    dport: int = 0
    payload: bytes = b""
    length: int | None = None
    csum: int | None = None

    def encode(self, src: bytes, dst: bytes) -> bytes:
        ln = 8 + len(self.payload)
        hdr = _UDP.pack(self.sport, self.dport, self.length if self.length is not None else ln, 0)
        seg = hdr + self.payload
        if self.csum is not None:
            c = self.csum
        else:
            c = checksum(seg, pseudo_header_sum(src, dst, IPPROTO_UDP, ln)) or 0xFFFF
        return seg[:6] + struct.pack("!H", c) + seg[8:]


def decode_udp(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> UDP:
    end = len(buf) if end is None else end
    if end - off < 8:
        raise DecodeError("short UDP header")
    sport, dport, ln, csum = _UDP.unpack_from(buf, off)
    return UDP(sport, dport, bytes(buf[off + 8: end]), ln, csum)


# --------------------------------------------------------------------------- ICMP


@dataclass
class ICMP:
    """ICMP message. For echo/timestamp/mask/info the typed fields are used; for errors
    (unreachable, time exceeded, ...) `quoted` holds the quoted IP header and leading bytes."""

    type: int = ICMP_ECHO
    code: int = 0
    id: int = 0
    seq: int = 0
    data: bytes = b""  # echo payload, or the raw body for other types
    orig: int = 0  # timestamp: originate / receive / transmit (ms since midnight UT)
    recv: int = 0
    xmit: int = 0
    mask: bytes = b"\0" * 4
    unused: int = 0  # 4 bytes after the checksum in error messages (next-hop MTU for code 4)
    quoted: bytes = b""
    csum: int | None = None

    def body(self) -> bytes:
        t = self.type
        if t in (ICMP_ECHO, ICMP_ECHOREPLY, ICMP_INFO, ICMP_INFOREPLY):
            return _ICMP_ECHO.pack(self.id, self.seq) + self.data
        if t in (ICMP_TSTAMP, ICMP_TSTAMPREPLY):
            return _ICMP_TS.pack(self.id, self.seq, self.orig, self.recv, self.xmit)
        if t in (ICMP_MASKREQ, ICMP_MASKREPLY):
            return _ICMP_MASK.pack(self.id, self.seq, self.mask)
        if t in (ICMP_UNREACH, ICMP_TIMXCEED, 4, 5, 12):
            return struct.pack("!I", self.unused) + self.quoted
        return self.data

    def encode(self) -> bytes:
        msg = _ICMP.pack(self.type, self.code, 0) + self.body()
        c = self.csum if self.csum is not None else checksum(msg)
        return msg[:2] + struct.pack("!H", c) + msg[4:]

    def quoted_packet(self) -> tuple[IPv4, bytes] | None:
        """The quoted IP header and the bytes after it (8 or more), or None when not parseable."""
        return quoted_header(self.quoted, decode_ipv4)


H = typing.TypeVar("H")


def quoted_header(quoted: bytes, decode: Callable[[bytes], tuple[H, int, int]]) -> tuple[H, bytes] | None:
    """An ICMP error's quoted IP header (decoded by `decode`) and the bytes after it; None when
    there is no quote or it does not parse (ICMP and ICMPv6 alike)."""
    if not quoted:
        return None
    try:
        ip, poff, _end = decode(quoted)
    except DecodeError:
        return None
    return ip, quoted[poff:]


def decode_icmp(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> ICMP:
    end = len(buf) if end is None else end
    if end - off < 4:
        raise DecodeError("short ICMP header")
    t, code, csum = _ICMP.unpack_from(buf, off)
    b = off + 4
    m = ICMP(t, code, csum=csum)
    if t in (ICMP_ECHO, ICMP_ECHOREPLY, ICMP_INFO, ICMP_INFOREPLY):
        if end - b < 4:
            raise DecodeError("short ICMP echo")
        m.id, m.seq = _ICMP_ECHO.unpack_from(buf, b)
        m.data = bytes(buf[b + 4: end])
    elif t in (ICMP_TSTAMP, ICMP_TSTAMPREPLY):
        if end - b < _ICMP_TS.size:
            raise DecodeError("short ICMP timestamp")
        m.id, m.seq, m.orig, m.recv, m.xmit = _ICMP_TS.unpack_from(buf, b)
    elif t in (ICMP_MASKREQ, ICMP_MASKREPLY):
        if end - b < _ICMP_MASK.size:
            raise DecodeError("short ICMP address mask")
        m.id, m.seq, mask = _ICMP_MASK.unpack_from(buf, b)
        m.mask = bytes(mask)
    elif t in (ICMP_UNREACH, ICMP_TIMXCEED, 4, 5, 12):
        if end - b < 4:
            raise DecodeError("short ICMP error")
        m.unused = struct.unpack_from("!I", buf, b)[0]
        m.quoted = bytes(buf[b + 4: end])
    else:
        m.data = bytes(buf[b:end])
    return m


# --------------------------------------------------------------------------- whole packets

L4 = Union[TCP, UDP, ICMP, bytes]


@dataclass
class Packet:
    """A decoded frame: optional Ethernet, then ARP or IPv4 (or, when asked for, IPv6) with its
    transport."""

    eth: Ethernet | None
    arp: ARP | None = None
    ip: IPv4 | None = None
    l4: L4 | None = None
    ts: float | None = None  # kernel receive time, seconds

    @property
    def tcp(self) -> TCP | None:
        return self.l4 if isinstance(self.l4, TCP) else None

    @property
    def udp(self) -> UDP | None:
        return self.l4 if isinstance(self.l4, UDP) else None

    @property
    def icmp(self) -> ICMP | None:
        return self.l4 if isinstance(self.l4, ICMP) else None

    @property
    def version(self) -> int | None:
        """4 or 6 for an IP packet, None for ARP and frames we do not decode."""
        return None if self.ip is None else (4 if isinstance(self.ip, IPv4) else 6)


def decode_ip_packet(buf: bytes | memoryview, off: int = 0) -> tuple[IPv4, L4]:
    ip, poff, end = decode_ipv4(buf, off)
    if ip.frag or ip.mf:
        return ip, bytes(buf[poff:end])  # fragments: not reassembled, kept raw
    if ip.proto == IPPROTO_TCP:
        return ip, decode_tcp(buf, poff, end)
    if ip.proto == IPPROTO_UDP:
        return ip, decode_udp(buf, poff, end)
    if ip.proto == IPPROTO_ICMP:
        return ip, decode_icmp(buf, poff, end)
    return ip, bytes(buf[poff:end])


def decode_frame(buf: bytes | memoryview, ts: float | None = None) -> Packet:
    """ARP and IPv4 frames decoded (engine/frames.py decodes IPv6 too: opt-in, so that handlers
    written for IPv4 addresses never meet a 16-byte address they did not expect)."""
    eth, off = decode_ethernet(buf)
    if eth.type == ETH_P_ARP:
        return Packet(eth, arp=decode_arp(buf, off), ts=ts)
    if eth.type == ETH_P_IP:
        ip, l4 = decode_ip_packet(buf, off)
        return Packet(eth, ip=ip, l4=l4, ts=ts)
    return Packet(eth, ts=ts)


def build_ip(ip: IPv4, l4: TCP | UDP | ICMP | bytes) -> bytes:
    """An IPv4 packet with correct lengths and checksums (unless fixed values were set)."""
    if isinstance(l4, (TCP, UDP)):
        body = l4.encode(ip.src, ip.dst)
    elif isinstance(l4, ICMP):
        body = l4.encode()
    else:
        body = bytes(l4)
    return ip.encode(len(body)) + body


def build_frame(eth: Ethernet, ip: IPv4, l4: TCP | UDP | ICMP | bytes) -> bytes:
    return eth.encode() + build_ip(ip, l4)


def ip_to_int(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")
