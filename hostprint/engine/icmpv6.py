"""ICMPv6 (RFC 4443) and the Neighbor Discovery messages (RFC 4861), encoded and decoded.

Unlike ICMP, ICMPv6's checksum covers the IPv6 pseudo-header (RFC 4443 §2.3), so encoding needs
both addresses. Errors quote as much of the invoking packet as fits in the minimum MTU, which is
where a scanner finds the probe's ports and cookie again. ND options are kept as (type, bytes) in
wire order: the option layout of a Neighbor Advertisement is itself a small fingerprint. Malformed
option lists (length 0, or running past the message, which RFC 4861 §4.6 says to discard) are
flagged, not raised, so the rest of the message stays readable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hostprint.engine.checksum import checksum, pseudo_header_sum6
from hostprint.engine.ipv6 import decode_ipv6
from hostprint.engine.packets import DecodeError, quoted_header

# Types (RFC 4443 §2.1, RFC 4861 §4, RFC 2710/3810)
DST_UNREACH, PACKET_TOO_BIG, TIME_EXCEEDED, PARAM_PROBLEM = 1, 2, 3, 4
ECHO_REQUEST, ECHO_REPLY = 128, 129
MLD_QUERY, MLD_REPORT, MLD_DONE, MLD2_REPORT = 130, 131, 132, 143
ROUTER_SOLICIT, ROUTER_ADVERT, NEIGHBOR_SOLICIT, NEIGHBOR_ADVERT, REDIRECT = 133, 134, 135, 136, 137
ERRORS = (DST_UNREACH, PACKET_TOO_BIG, TIME_EXCEEDED, PARAM_PROBLEM)

# Destination unreachable codes (RFC 4443 §3.1, RFC 8883)
UNREACH_NOROUTE, UNREACH_ADMIN, UNREACH_BEYONDSCOPE, UNREACH_ADDR, UNREACH_PORT = 0, 1, 2, 3, 4
UNREACH_POLICY, UNREACH_REJECT_ROUTE, UNREACH_SRCRT, UNREACH_HEADERS_TOO_LONG = 5, 6, 7, 8
# Time exceeded codes (§3.3)
TIMXCEED_HOPLIMIT, TIMXCEED_REASSEMBLY = 0, 1
# Parameter problem codes (§3.4, RFC 7112)
PARAMPROB_HEADER, PARAMPROB_NEXTHEADER, PARAMPROB_OPTION, PARAMPROB_FIRSTFRAG = 0, 1, 2, 3

# ND option types (RFC 4861 §4.6)
OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR, OPT_PREFIX_INFO, OPT_REDIRECTED, OPT_MTU = 1, 2, 3, 4, 5

# Neighbor Advertisement flags, in the 32-bit word after the checksum (§4.4)
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80000000, 0x40000000, 0x20000000

_HDR = struct.Struct("!BBH")
_ECHO = struct.Struct("!HH")
_WORD = struct.Struct("!I")

NDOption = tuple[int, bytes]  # (type, data after type and length, padding included)


def encode_nd_options(opts: list[NDOption]) -> bytes:
    out = bytearray()
    for t, data in opts:
        data = bytes(data) + b"\0" * (-(2 + len(data)) % 8)
        out += bytes((t & 0xFF, ((2 + len(data)) // 8) & 0xFF)) + data
    return bytes(out)


def decode_nd_options(raw: bytes | memoryview) -> tuple[list[NDOption], bool]:
    """(options, bad): `bad` for a zero length or an option running past the message."""
    raw = bytes(raw)
    opts: list[NDOption] = []
    i, n = 0, len(raw)
    while i < n:
        if i + 2 > n:
            return opts, True
        t, ln = raw[i], raw[i + 1] * 8
        if ln == 0 or i + ln > n:
            return opts, True
        opts.append((t, raw[i + 2: i + ln]))
        i += ln
    return opts, False


@dataclass
class ICMPv6:
    """One ICMPv6 message. Which fields a type uses:
    echo: id, seq, data; errors: word (unused / MTU / pointer), quoted; NS and NA: word (NA
    flags), target, options; RS: word, options; RA: word (hop limit, flags, lifetime), data
    (reachable and retransmit timers, 8 bytes), options; redirect: word, target, dest, options;
    anything else: data (the body after the first four bytes)."""

    type: int = ECHO_REQUEST
    code: int = 0
    id: int = 0
    seq: int = 0
    data: bytes = b""
    word: int = 0
    quoted: bytes = b""
    target: bytes = b""
    dest: bytes = b""
    options: list[NDOption] = field(default_factory=list)
    csum: int | None = None
    opt_bad: bool = False

    @property
    def mtu(self) -> int:
        """Packet Too Big: the next hop's MTU."""
        return self.word

    @property
    def pointer(self) -> int:
        """Parameter Problem: offset of the offending byte in the quoted packet."""
        return self.word

    @property
    def router(self) -> bool:
        return bool(self.word & NA_ROUTER)

    @property
    def solicited(self) -> bool:
        return bool(self.word & NA_SOLICITED)

    @property
    def override(self) -> bool:
        return bool(self.word & NA_OVERRIDE)

    def lladdr(self, kind: int = OPT_TARGET_LLADDR) -> bytes | None:
        """The first source/target link-layer address option's address (6 bytes on Ethernet)."""
        for t, data in self.options:
            if t == kind and len(data) >= 6:
                return data[:6]
        return None

    def body(self) -> bytes:
        t = self.type
        if t in (ECHO_REQUEST, ECHO_REPLY):
            return _ECHO.pack(self.id & 0xFFFF, self.seq & 0xFFFF) + self.data
        w = _WORD.pack(self.word & 0xFFFFFFFF)
        if t in ERRORS:
            return w + self.quoted
        opts = encode_nd_options(self.options)
        if t in (NEIGHBOR_SOLICIT, NEIGHBOR_ADVERT):
            return w + self.target + opts
        if t == ROUTER_SOLICIT:
            return w + opts
        if t == ROUTER_ADVERT:
            return w + self.data + opts
        if t == REDIRECT:
            return w + self.target + self.dest + opts
        return self.data

    def encode(self, src: bytes, dst: bytes) -> bytes:
        """The message with its checksum over the IPv6 pseudo-header (`dst` = final destination)."""
        msg = _HDR.pack(self.type & 0xFF, self.code & 0xFF, 0) + self.body()
        c = self.csum if self.csum is not None else checksum(msg, pseudo_header_sum6(src, dst, 58, len(msg)))
        return msg[:2] + struct.pack("!H", c) + msg[4:]

    def quoted_packet(self) -> tuple[object, bytes] | None:
        """The quoted IPv6 header (with its extension chain) and the bytes after the chain, or
        None when the quote does not parse."""
        return quoted_header(self.quoted, decode_ipv6)


def decode_icmpv6(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> ICMPv6:
    end = len(buf) if end is None else min(end, len(buf))
    if end - off < 4:
        raise DecodeError("short ICMPv6 header")
    t, code, csum = _HDR.unpack_from(buf, off)
    b = off + 4
    m = ICMPv6(t, code, csum=csum)
    if t in (ECHO_REQUEST, ECHO_REPLY):
        if end - b < 4:
            raise DecodeError("short ICMPv6 echo")
        m.id, m.seq = _ECHO.unpack_from(buf, b)
        m.data = bytes(buf[b + 4: end])
        return m
    fixed = {NEIGHBOR_SOLICIT: 20, NEIGHBOR_ADVERT: 20, ROUTER_SOLICIT: 4, ROUTER_ADVERT: 12, REDIRECT: 36}
    if t in ERRORS or t in fixed:
        need = fixed.get(t, 4)
        if end - b < need:
            raise DecodeError("short ICMPv6 message")
        m.word = _WORD.unpack_from(buf, b)[0]
        if t in ERRORS:
            m.quoted = bytes(buf[b + 4: end])
            return m
        if t in (NEIGHBOR_SOLICIT, NEIGHBOR_ADVERT, REDIRECT):
            m.target = bytes(buf[b + 4: b + 20])
        if t == REDIRECT:
            m.dest = bytes(buf[b + 20: b + 36])
        if t == ROUTER_ADVERT:
            m.data = bytes(buf[b + 4: b + 12])
        m.options, m.opt_bad = decode_nd_options(buf[b + need: end])
        return m
    m.data = bytes(buf[b:end])
    return m


# --------------------------------------------------------------------------- constructors


def echo_request(id: int, seq: int, data: bytes = b"", code: int = 0) -> ICMPv6:
    """`code` is settable because nmap's IE1 probe sends 9 to see whether a stack echoes it."""
    return ICMPv6(ECHO_REQUEST, code, id, seq, data)


def neighbor_solicitation(target: bytes, mac: bytes | None = None) -> ICMPv6:
    """NS for `target`; with our MAC as source link-layer address option, so the target can answer
    without a solicitation of its own (required unless the source is unspecified, §4.3)."""
    return ICMPv6(NEIGHBOR_SOLICIT, 0, target=target, options=[(OPT_SOURCE_LLADDR, mac)] if mac else [])


def neighbor_advertisement(target: bytes, mac: bytes | None, *, router: bool = False, solicited: bool = True,
                           override: bool = True) -> ICMPv6:
    word = (NA_ROUTER if router else 0) | (NA_SOLICITED if solicited else 0) | (NA_OVERRIDE if override else 0)
    return ICMPv6(NEIGHBOR_ADVERT, 0, word=word, target=target,
                  options=[(OPT_TARGET_LLADDR, mac)] if mac else [])


def error(type: int, code: int, quoted: bytes, word: int = 0) -> ICMPv6:
    """An error message quoting `quoted`, cut so the whole packet stays within the IPv6 minimum
    MTU of 1280 bytes (RFC 4443 §2.4 (c)): 40 + 8 header bytes, 1232 quoted."""
    return ICMPv6(type, code, word=word, quoted=bytes(quoted[:1232]))
