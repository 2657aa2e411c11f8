"""What passive fingerprinting reads off packet headers: a SYN or SYN+ACK as p0f describes it
(TTL, window, options layout, quirks …), a cache key for headers that give the same signature,
and the head of an HTTP/1.x message. Byte-level parsing on the engine floor, so the passive
analyzer, -O's p0f view and the matchers share one reader.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

SYN, ACK, PSH, URG, RST, FIN, ECE, CWR = 0x02, 0x10, 0x08, 0x20, 0x04, 0x01, 0x40, 0x80
_OPTNAME = {1: "nop", 2: "mss", 3: "ws", 4: "sok", 5: "sack", 8: "ts"}
_IP4 = struct.Struct("!BBHHHBBH")
_TCP = struct.Struct("!HHIIBBHHH")
U16 = struct.Struct("!H")
U16X2 = struct.Struct("!HH")
_II = struct.Struct("!II")

HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ")
MAX_HEADERS = 64


def addr_text(b: bytes) -> str:
    """4 or 16 address bytes as text."""
    if len(b) == 4:
        return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])
    import ipaddress

    return str(ipaddress.IPv6Address(b))


@dataclass(slots=True)
class TcpObservation:
    """One SYN or SYN+ACK as p0f describes it (fields named after its signature)."""

    ver: int
    ttl: int
    olen: int
    mss: int | None
    win: int
    wscale: int | None
    layout: tuple[str, ...]
    quirks: frozenset[str]
    pclass: int
    tos: int
    hdr_len: int  # IP + TCP header bytes (p0f's "actual size" for the mtu* window form)
    tsval: int | None
    tsecr: int | None
    synack: bool
    ipid: int = 0
    flow: int = 0

    def key(self, peer_mss: int | None) -> tuple[object, ...]:
        return (self.synack, self.ver, self.ttl, self.olen, self.mss, self.win, self.wscale, self.layout,
                self.quirks, self.pclass, self.hdr_len, peer_mss if self.synack else None)


def parse_tcp(buf: bytes, ip: int, end: int, ver: int, synack: bool) -> tuple[TcpObservation, int, int, int, int] | None:
    """SYN / SYN+ACK at IP header offset `ip` (frame bytes end at `end`) -> (observation,
    source port, destination port, TCP header offset, offset of the timestamp option within the
    options or -1); None when too short to say anything."""
    if ver == 4:
        if end - ip < 20:
            return None
        vihl, tos, total, ipid, ff, ttl, _proto, _ck = _IP4.unpack_from(buf, ip)
        ihl = (vihl & 15) << 2
        if ihl < 20:
            return None
        end = min(end, ip + total) if total >= ihl else end
        quirks = set()
        if ff & 0x4000:
            quirks.add("df")
            if ipid:
                quirks.add("id+")
        elif not ipid:
            quirks.add("id-")
        if ff & 0x8000:
            quirks.add("0+")
        if tos & 3:
            quirks.add("ecn")
        olen = ihl - 20
        flow = 0
    else:
        if end - ip < 40:
            return None
        w0 = struct.unpack_from("!I", buf, ip)[0]
        tos = (w0 >> 20) & 0xFF
        flow = w0 & 0xFFFFF
        plen = U16.unpack_from(buf, ip + 4)[0]
        ttl = buf[ip + 7]
        ihl = 40
        end = min(end, ip + 40 + plen)
        quirks = set()
        if flow:
            quirks.add("flow")
        if tos & 3:
            quirks.add("ecn")
        olen = 0
        ipid = 0
    t = ip + ihl
    if end - t < 20:
        return None
    sport, dport, seq, ackn, doff, flags, win, _ck, urp = _TCP.unpack_from(buf, t)
    thl = (doff >> 4) << 2
    if thl < 20 or t + thl > end:
        return None
    if flags & (ECE | CWR) or doff & 1:
        quirks.add("ecn")
    if not seq:
        quirks.add("seq-")
    if flags & ACK:
        if not ackn:
            quirks.add("ack-")
    elif ackn:
        quirks.add("ack+")
    if flags & URG:
        quirks.add("urgf+")
    elif urp:
        quirks.add("uptr+")
    if flags & PSH:
        quirks.add("pushf+")
    # options
    layout: list[str] = []
    mss = wscale = tsval = tsecr = None
    ts_off = -1
    i, oend = t + 20, t + thl
    while i < oend:
        k = buf[i]
        if k == 0:
            pad = buf[i + 1: oend]
            layout.append(f"eol+{len(pad)}")
            if pad.count(0) != len(pad):
                quirks.add("opt+")
            break
        if k == 1:
            layout.append("nop")
            i += 1
            continue
        if i + 1 >= oend:
            quirks.add("bad")
            layout.append(_OPTNAME.get(k) or f"?{k}")
            break
        ln = buf[i + 1]
        if ln < 2 or i + ln > oend:
            quirks.add("bad")
            layout.append(_OPTNAME.get(k) or f"?{k}")
            break
        if k == 2:
            if ln != 4:
                quirks.add("bad")
            else:
                mss = U16.unpack_from(buf, i + 2)[0]
            layout.append("mss")
        elif k == 3:
            if ln != 3:
                quirks.add("bad")
            else:
                wscale = buf[i + 2]
                if wscale > 14:
                    quirks.add("exws")
            layout.append("ws")
        elif k == 4:
            if ln != 2:
                quirks.add("bad")
            layout.append("sok")
        elif k == 5:
            layout.append("sack")
        elif k == 8:
            if ln != 10:
                quirks.add("bad")
            else:
                tsval, tsecr = _II.unpack_from(buf, i + 2)
                if ts_off < 0:
                    ts_off = i - t - 20
                if not tsval:
                    quirks.add("ts1-")
                if tsecr and not synack:
                    quirks.add("ts2+")
            layout.append("ts")
        else:
            layout.append(f"?{k}")
        i += ln
    pclass = 1 if end > t + thl else 0
    o = TcpObservation(ver, ttl, olen, mss, win, wscale, tuple(layout), frozenset(quirks), pclass, tos,
                       ihl + thl, tsval, tsecr, synack, ipid, flow)
    return o, sport, dport, t, ts_off


def syn_cache_key(buf: bytes, ip: int, t: int, end: int) -> tuple[tuple[object, ...], int | None] | None:
    """(key, tsval) for an IPv4 SYN or SYN+ACK: every header bit the signature depends on, with
    the timestamp values cut out of the options (they change on every packet). Two packets with
    the same key have the same signature, because the option walk up to the timestamp reads only
    bytes inside the key (the caller checks once, on the parse that fills the cache, that the
    timestamp option really starts where `find` saw it)."""
    vihl, tos, total, ipid, ff, ttl, _p, _c = _IP4.unpack_from(buf, ip)
    ihl = (vihl & 15) << 2
    if total >= ihl:
        end = min(end, ip + total)
    if end - t < 20:
        return None
    _sp, _dp, seq, ackn, doff, flags, win, _ck, urp = _TCP.unpack_from(buf, t)
    thl = (doff >> 4) << 2
    if thl < 20 or t + thl > end:
        return None
    opts = buf[t + 20: t + thl]
    i = opts.find(b"\x08\x0a")
    tsval = tsecr = None
    if i >= 0 and i + 10 <= len(opts):
        tsval, tsecr = _II.unpack_from(opts, i + 2)
        opts = opts[: i + 2] + opts[i + 10:]
    else:
        i = -1
    return ((vihl, tos, ff & 0xE000, not ipid, ttl, buf[ip + 20: t] if ihl > 20 else b"", doff, flags, win, not urp,
             not seq, not ackn, end > t + thl, opts, i, tsval == 0, bool(tsecr)), tsval)


# --------------------------------------------------------------------------- HTTP


_HEADER = re.compile(rb"\r\n([^\s:]+):[ \t]*([^\r\n]*)")


def http_head(payload: bytes) -> tuple[bool, int, bytes, tuple[bytes, ...], dict[bytes, bytes]] | None:
    """(is_request, minor version, first line, header names in order, lower-case name -> raw
    value) of an HTTP/1.x first segment; None when the bytes are not HTTP/1.x. One regex pass in
    C; nothing is decoded here (the caller decodes only what its caches have not seen)."""
    request = payload.startswith(HTTP_METHODS)
    if not request and not payload.startswith(b"HTTP/1."):
        return None
    end = payload.find(b"\r\n\r\n")
    head = payload if end < 0 else payload[: end + 2]
    i = head.find(b"\r\n")
    first = head if i < 0 else head[:i]
    if request:
        ver = first[first.rfind(b" ") + 1:]
        if not ver.startswith(b"HTTP/1."):
            return None
        v = ver[7:8]
    else:
        v = first[7:8]
    if v != b"1" and v != b"0":
        return None
    pairs = _HEADER.findall(head, i if i >= 0 else len(head))[:MAX_HEADERS]
    return request, v[0] - 48, first, tuple([n for n, _ in pairs]), {n.lower(): val for n, val in pairs}
