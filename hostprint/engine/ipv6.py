"""IPv6 (RFC 8200): the fixed header and the extension-header chain, encoded and decoded with struct.

Why a chain of objects instead of a normalised header: IPv6 fingerprinting (nmap's IE2 probe, the
reply's traffic class, flow label and hop limit) needs headers in any order, repeated, padded
oddly or plainly wrong, and it needs to see what a stack sends back without our decoder fixing it
up. So the encoder writes the list as given (next-header values are chained automatically unless
set by hand, which is how a malformed or looping chain is crafted), and the decoder keeps every
header it walked, in order. The walk is bounded twice: by `MAX_EXT_HEADERS` and by the bytes the
packet really holds, so a hostile chain costs at most a few dozen small steps and can only end in
`DecodeError`. A non-first fragment stops the walk (what follows is fragment data, not headers);
ESP stops it too (its length is not in the clear).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from hostprint.engine.packets import DecodeError

IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT = 0, 43, 44
IPPROTO_ESP, IPPROTO_AH, IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_DSTOPTS = 50, 51, 58, 59, 60
IPPROTO_MH, IPPROTO_HIP, IPPROTO_SHIM6 = 135, 139, 140

#: Headers the decoder walks through (RFC 8200 §4 and the IANA "IPv6 Extension Header Types"
#: registry; 253/254 are the experimental values of RFC 3692 in the RFC 6564 uniform format).
EXT_HEADERS = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS, IPPROTO_AH,
                         IPPROTO_MH, IPPROTO_HIP, IPPROTO_SHIM6, 253, 254})

#: Far above any legitimate chain (RFC 8200 allows each header once, destination options twice;
#: nmap's strangest probe has four), low enough that a hostile chain costs nothing.
MAX_EXT_HEADERS = 32

# Hop-by-hop / destination option types (RFC 8200 §4.2, RFC 2711, RFC 2675)
OPT_PAD1, OPT_PADN, OPT_ROUTER_ALERT, OPT_JUMBO = 0x00, 0x01, 0x05, 0xC2

_IP6 = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BBHI")

Option = tuple[int, bytes]  # (type, data); Pad1 is (0, b"")


# --------------------------------------------------------------------------- addresses


def ip6_bytes(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, addr)


def ip6_str(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, bytes(b))


def ip6_to_int(addr: str | bytes) -> int:
    return int.from_bytes(ip6_bytes(addr) if isinstance(addr, str) else bytes(addr), "big")


def int_to_ip6(x: int) -> str:
    return ip6_str(x.to_bytes(16, "big"))


def is_ipv6(addr: str) -> bool:
    """True for an IPv6 literal (a zone such as %eth0 allowed), False for anything else."""
    try:
        return isinstance(ipaddress.ip_address(addr.split("%", 1)[0]), ipaddress.IPv6Address)
    except ValueError:
        return False


# --------------------------------------------------------------------------- options (HbH, DestOpts)


def encode_options(opts: list[Option], pad: bool = True, header: int = 2) -> bytes:
    """TLV options as given; with `pad`, Pad1/PadN so that the header (2 bytes of next-header and
    length plus the options) fills whole 8-octet units, as RFC 8200 §4.2 requires."""
    out = bytearray()
    for t, data in opts:
        if t == OPT_PAD1 and not data:
            out.append(0)
        else:
            out += bytes((t & 0xFF, len(data) & 0xFF)) + bytes(data)
    need = -(header + len(out)) % 8 if pad else 0
    if need == 1:
        out.append(OPT_PAD1)
    elif need:
        out += bytes((OPT_PADN, need - 2)) + b"\0" * (need - 2)
    return bytes(out)


def decode_options(raw: bytes | memoryview) -> tuple[list[Option], bool]:
    """(options, bad): `bad` when an option's length runs past the header (what was read before
    stays). Padding is kept, so a decoded header re-encodes to the same bytes."""
    raw = bytes(raw)
    opts: list[Option] = []
    i, n = 0, len(raw)
    while i < n:
        t = raw[i]
        if t == OPT_PAD1:
            opts.append((OPT_PAD1, b""))
            i += 1
            continue
        if i + 2 > n or i + 2 + raw[i + 1] > n:
            return opts, True
        ln = raw[i + 1]
        opts.append((t, raw[i + 2: i + 2 + ln]))
        i += 2 + ln
    return opts, False


# --------------------------------------------------------------------------- extension headers


@dataclass
class _OptionsHeader:
    """The TLV-options layout both option headers share. `nh` None = chained on encode."""

    options: list[Option] = field(default_factory=list)
    nh: int | None = None
    pad: bool = True
    bad: bool = False  # decode: an option ran past the header end
    code: ClassVar[int]

    def encode(self, next_header: int) -> bytes:
        body = encode_options(self.options, self.pad)
        return bytes((next_header & 0xFF, ((2 + len(body) + 7) // 8 - 1) & 0xFF)) + body


@dataclass
class HopByHop(_OptionsHeader):
    """Options for every node on the path."""

    code: ClassVar[int] = IPPROTO_HOPOPTS


@dataclass
class DestOpts(_OptionsHeader):
    """Options for the destination (or, before a routing header, for every listed hop). Not a
    HopByHop subclass, so isinstance tells the two apart."""

    code: ClassVar[int] = IPPROTO_DSTOPTS


@dataclass
class Routing:
    """A routing header. `data` is everything after the 4 fixed bytes: for types 0 (deprecated by
    RFC 5095, still a fingerprint) and 2 a reserved word then addresses; for type 4 (SRH, RFC
    8754) last-entry/flags/tag then the segment list, whose first entry is the final segment."""

    type: int = 0
    segleft: int = 0
    data: bytes = b"\0" * 4
    nh: int | None = None
    code: ClassVar[int] = IPPROTO_ROUTING

    @classmethod
    def with_addresses(cls, addrs: list[bytes], type: int = 0, segleft: int | None = None) -> Routing:
        return cls(type, len(addrs) if segleft is None else segleft, b"\0" * 4 + b"".join(addrs))

    def addresses(self) -> list[bytes]:
        body = self.data[4:]
        return [body[i: i + 16] for i in range(0, len(body) - 15, 16)]

    def final_destination(self) -> bytes | None:
        """The address a transport checksum is computed against (RFC 8200 §8.1), or None when
        the header does not change it (no segments left, or a type we cannot read)."""
        if self.segleft == 0 or self.type not in (0, 2, 4):
            return None
        addrs = self.addresses()
        if not addrs:
            return None
        return addrs[0] if self.type == 4 else addrs[-1]

    def encode(self, next_header: int) -> bytes:
        data = self.data + b"\0" * (-(4 + len(self.data)) % 8)
        return bytes((next_header & 0xFF, ((4 + len(data)) // 8 - 1) & 0xFF, self.type & 0xFF,
                      self.segleft & 0xFF)) + data


@dataclass
class Fragment:
    """Fragment header. `offset` counts 8-octet units; an atomic fragment (RFC 6946) has offset 0
    and `more` False and is decoded like an unfragmented packet."""

    offset: int = 0
    more: bool = False
    ident: int = 0
    reserved: int = 0  # the reserved byte after next-header
    res2: int = 0  # the two reserved bits before M
    nh: int | None = None
    code: ClassVar[int] = IPPROTO_FRAGMENT

    def encode(self, next_header: int) -> bytes:
        return _FRAG.pack(next_header & 0xFF, self.reserved & 0xFF,
                          (self.offset & 0x1FFF) << 3 | (self.res2 & 3) << 1 | int(self.more), self.ident & 0xFFFFFFFF)


@dataclass
class RawExt:
    """Any other header in the uniform format (RFC 6564), or a deliberately broken one: `body` is
    everything after next-header and length, written as is. `length` None = computed (4-octet
    units for AH, RFC 4302; 8-octet units otherwise)."""

    code: int
    body: bytes = b"\0" * 6
    nh: int | None = None
    length: int | None = None

    def encode(self, next_header: int) -> bytes:
        if self.length is not None:
            ln = self.length
        elif self.code == IPPROTO_AH:
            ln = (2 + len(self.body)) // 4 - 2
        else:
            ln = (2 + len(self.body)) // 8 - 1
        return bytes((next_header & 0xFF, ln & 0xFF)) + bytes(self.body)


ExtHeader = HopByHop | DestOpts | Routing | Fragment | RawExt


def encode_ext_chain(ext: list[ExtHeader], upper: int) -> bytes:
    """The headers in the order given; each one's next-header names the one after it (or `upper`)
    unless its `nh` was set by hand."""
    out = bytearray()
    for i, h in enumerate(ext):
        nxt = ext[i + 1].code if i + 1 < len(ext) else upper
        out += h.encode(nxt if h.nh is None else h.nh)
    return bytes(out)


# --------------------------------------------------------------------------- the fixed header


@dataclass
class IPv6:
    src: bytes = b"\0" * 16
    dst: bytes = b"\0" * 16
    proto: int | None = None  # upper layer after the chain; None = from the transport (build_ip6)
    hlim: int = 64
    tc: int = 0
    flow: int = 0
    ext: list[ExtHeader] = field(default_factory=list)
    plen: int | None = None  # payload length as on the wire; None = computed on encode
    nh: int | None = None  # the fixed header's next header; None = chained
    version: int = 6

    @property
    def ttl(self) -> int:
        """The hop limit under IPv4's name, so reply-distance code serves both families."""
        return self.hlim

    @property
    def tos(self) -> int:
        return self.tc

    @property
    def header_length(self) -> int:
        """Fixed header plus the extension chain as it encodes."""
        return 40 + len(encode_ext_chain(self.ext, 0))

    def fragment(self) -> Fragment | None:
        for h in self.ext:
            if isinstance(h, Fragment):
                return h
        return None

    def final_dst(self) -> bytes:
        for h in self.ext:
            if isinstance(h, Routing):
                fd = h.final_destination()
                if fd is not None:
                    return fd
        return self.dst

    def encode(self, payload_length: int) -> bytes:
        upper = self.proto if self.proto is not None else IPPROTO_NONE
        chain = encode_ext_chain(self.ext, upper)
        first = self.nh if self.nh is not None else (self.ext[0].code if self.ext else upper)
        plen = self.plen if self.plen is not None else len(chain) + payload_length
        vtf = (self.version & 0xF) << 28 | (self.tc & 0xFF) << 20 | (self.flow & 0xFFFFF)
        return _IP6.pack(vtf, plen & 0xFFFF, first & 0xFF, self.hlim & 0xFF, self.src, self.dst) + chain


def _ext_length(code: int, ln: int) -> int:
    return (ln + 2) * 4 if code == IPPROTO_AH else (ln + 1) * 8


def decode_ipv6(buf: bytes | memoryview, off: int = 0) -> tuple[IPv6, int, int]:
    """Returns the header with its extension chain, the offset of the upper-layer data and the
    payload end (trimmed to the payload length; a zero length, i.e. a jumbogram, means the rest)."""
    n = len(buf)
    if n - off < 40:
        raise DecodeError("short IPv6 header")
    vtf, plen, nh, hlim, src, dst = _IP6.unpack_from(buf, off)
    if vtf >> 28 != 6:
        raise DecodeError("not IPv6")
    end = min(n, off + 40 + plen) if plen else n
    ip = IPv6(bytes(src), bytes(dst), None, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF, [], plen, nh)
    p = off + 40
    cur = nh
    while cur in EXT_HEADERS:
        if len(ip.ext) >= MAX_EXT_HEADERS:
            raise DecodeError(f"more than {MAX_EXT_HEADERS} IPv6 extension headers")
        if end - p < 8:
            raise DecodeError("IPv6 extension header cut short")
        nxt, ln = buf[p], buf[p + 1]
        size = 8 if cur == IPPROTO_FRAGMENT else _ext_length(cur, ln)
        if p + size > end:
            raise DecodeError("IPv6 extension header runs past the packet")
        body = bytes(buf[p + 2: p + size])
        if cur in (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS):
            opts, bad = decode_options(body)
            h: ExtHeader = (HopByHop if cur == IPPROTO_HOPOPTS else DestOpts)(opts, nxt, False, bad)
        elif cur == IPPROTO_ROUTING:
            h = Routing(body[0], body[1], body[2:], nxt)
        elif cur == IPPROTO_FRAGMENT:
            _, res, word, ident = _FRAG.unpack_from(buf, p)
            h = Fragment(word >> 3, bool(word & 1), ident, res, (word >> 1) & 3, nxt)
        else:
            h = RawExt(cur, body, nxt, ln)
        ip.ext.append(h)
        p += size
        cur = nxt
        if isinstance(h, Fragment) and h.offset:
            break  # fragment data follows, not headers
    ip.proto = cur
    return ip, p, end
