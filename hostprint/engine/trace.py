"""--packet-trace: one line per frame sent or received, in nmap's words, printed by the engine.

Why here and not in the techniques: every probe leaves through `Link.send`, a `BatchSender`
(the bulk scans' numpy rows) or the ND resolver, and every answer arrives through a link's ring,
so a tracer attached to those few places sees each packet once, as it was on the wire (after
fragmenting, before the kernel), whatever technique made it. Off (no tracer) it costs one
attribute test per batch or ring drain, nothing per packet.

The line format follows nmap 7.93's (measured side by side on the lab):
  SENT (0.0696s) TCP 198.18.0.1:64555 > 198.18.0.10:22 S ttl=52 id=34586 iplen=44  seq=2081664017 win=1024 <mss 1460>
  RCVD (0.0696s) ICMP [198.18.0.10 > 198.18.0.1 Echo reply (type=0/code=0) id=60318 seq=0] IP [ttl=64 id=11196 iplen=28 ]
  SENT (0.0172s) TCP 2001:2::1:63443 > 2001:2::10:22 S hopl=255 flow=0 payloadlen=24 seq=2538969082 win=1024 <mss 1460>
  SENT (0.0293s) ARP who-has 198.18.0.10 tell 198.18.0.1
Deliberate differences: `ack=` is printed whenever the ACK flag is set (our ACK probes carry their
cookie there; nmap prints it only at higher debug levels), and fragments are traced one line each
as they go out (nmap traces the packet before cutting it): the IP part says `frag off=N` and `MF`,
the transport part shows only the fields the fragment carries.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import cast

import numpy as np

from hostprint.engine.packets import decode_tcp_options

_FLAGS = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"), (0x40, "E"), (0x80, "C"))

ICMP_NAMES = {0: "Echo reply", 8: "Echo request", 13: "Timestamp request", 14: "Timestamp reply",
              17: "Address mask request", 18: "Address mask reply", 11: "TTL=0 during transit",
              4: "Source quench", 5: "Redirect", 12: "Parameter problem"}
UNREACH_NAMES = {0: "Network unreachable", 1: "Host unreachable", 2: "Protocol unreachable", 4: "Fragmentation needed",
                 9: "Network prohibited", 10: "Host prohibited", 13: "Communication administratively prohibited"}


def _flags(f: int) -> str:
    return "".join(c for bit, c in _FLAGS if f & bit)


def _options(raw: bytes) -> str:
    """nmap's option summary: <mss 1460,sackOK,timestamp 1 0,nop,wscale 7>, over the one option
    decoder (packets.decode_tcp_options)."""
    opts, bad, _ = decode_tcp_options(raw)
    out: list[str] = []
    for k, v in opts:
        if k == 0:
            out.append("eol")
        elif k == 1:
            out.append("nop")
        elif isinstance(v, bytes):  # a kind the decoder keeps raw (unknown, or a known one of the wrong length)
            out.append("sack %d" % (len(v) // 8) if k == 5 else f"opt{k} len={len(v) + 2}")
        elif k == 2:
            out.append(f"mss {v}")
        elif k == 3:
            out.append(f"wscale {v}")
        elif k == 4:
            out.append("sackOK")
        elif k == 8:
            out.append("timestamp %d %d" % cast("tuple[int, int]", v))
        elif k == 5:
            out.append("sack %d" % len(cast("tuple", v)))
    if bad:
        out.append("bad")
    return "<" + ",".join(out) + ">" if out else ""


def _tcp(seg: bytes, src: str, dst: str, iphdr: str, six: bool) -> str:
    """The TCP part; a fragment may hold only the first bytes of the header."""
    if len(seg) < 4:
        return f"TCP {src} > {dst} {iphdr}".rstrip()
    sport, dport = struct.unpack_from("!HH", seg)
    head = f"TCP {src}:{sport} > {dst}:{dport}"
    if len(seg) < 20:
        seq = f" seq={struct.unpack_from('!I', seg, 4)[0]}" if len(seg) >= 8 else ""
        return f"{head} {iphdr}{' ' if not six else ''}{seq}"
    seq, ack, off, flags, win = struct.unpack_from("!IIBBH", seg, 4)
    hl = (off >> 4) * 4
    opts = _options(seg[20:hl]) if hl > 20 else ""
    acks = f" ack={ack}" if flags & 0x10 else ""
    gap = " " if six else "  "
    return f"{head} {_flags(flags)} {iphdr}{gap}seq={seq}{acks} win={win} {opts}"


def _icmp(m: bytes, src: str, dst: str, iphdr: str) -> str:
    if len(m) < 4:
        return f"ICMP [{src} > {dst} (short)] IP [{iphdr} ]"
    t, code = m[0], m[1]
    extra = ""
    if t in (0, 8, 13, 14, 17, 18) and len(m) >= 8:
        i, s = struct.unpack_from("!HH", m, 4)
        extra = f" id={i} seq={s}"
        if t in (13, 14) and len(m) >= 20:
            extra += " orig=%d recv=%d trans=%d" % struct.unpack_from("!III", m, 8)
        if t in (17, 18) and len(m) >= 12:
            extra += f" mask={socket.inet_ntoa(m[8:12])}"
    if t == 3:
        extra = " "  # nmap: "Port 123 unreachable (type=3/code=3) ]"
        if code == 3 and len(m) >= 8 + 20 + 4:
            q = 8 + (m[8] & 15) * 4
            port = struct.unpack_from("!H", m, q + 2)[0] if len(m) >= q + 4 else 0
            name = f"Port {port} unreachable"
        else:
            name = UNREACH_NAMES.get(code, "Destination unreachable")
    else:
        name = ICMP_NAMES.get(t, "Unknown")
    return f"ICMP [{src} > {dst} {name} (type={t}/code={code}){extra}] IP [{iphdr} ]"


_PROTO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}


def _later_fragment(ip: str, proto: int, src: str, dst: str, iphdr: str) -> str:
    """A fragment after the first carries no transport header: name the protocol only."""
    return f"{ip} {src} > {dst} {_PROTO_NAMES.get(proto, f'proto={proto}')} {iphdr}"


def _udp(body: bytes, src: str, dst: str, iphdr: str) -> str:
    if len(body) < 4:
        return f"UDP {src} > {dst} {iphdr}"
    sport, dport = struct.unpack_from("!HH", body)
    return f"UDP {src}:{sport} > {dst}:{dport} {iphdr}"


def _ipv4(fr: bytes) -> str:
    if len(fr) < 34:
        return "IP (short)"
    vihl, _tos, total, ident, ff, ttl, proto = struct.unpack_from("!BBHHHBB", fr, 14)
    ihl = (vihl & 15) * 4
    src, dst = socket.inet_ntoa(fr[26:30]), socket.inet_ntoa(fr[30:34])
    body = fr[14 + ihl:14 + total] if total >= ihl else fr[14 + ihl:]
    off, mf = (ff & 0x1FFF) * 8, bool(ff & 0x2000)
    iphdr = f"ttl={ttl} id={ident} iplen={total}"
    if off or mf:
        iphdr += f" frag off={off}{' MF' if mf else ''}"
    if off:  # a later fragment: no transport header in it
        return _later_fragment("IP", proto, src, dst, iphdr)
    if proto == 6:
        return _tcp(body, src, dst, iphdr, False)
    if proto == 17:
        return _udp(body, src, dst, iphdr + " ")  # nmap's IPv4 UDP line ends in a space
    if proto == 1:
        return _icmp(body, src, dst, iphdr)
    return f"IP {src} > {dst} proto={proto} {iphdr}"


_EXT = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH (44: fragment, apart)


def _ipv6(fr: bytes) -> str:
    if len(fr) < 54:
        return "IPv6 (short)"
    vtf, plen, nh, hlim = struct.unpack_from("!IHBB", fr, 14)
    src = socket.inet_ntop(socket.AF_INET6, fr[22:38])
    dst = socket.inet_ntop(socket.AF_INET6, fr[38:54])
    at, end = 54, min(len(fr), 54 + plen)
    frag = ""
    later = False
    for _ in range(8):  # walk a short extension chain
        if nh == 44 and at + 8 <= end:
            fo = struct.unpack_from("!H", fr, at + 2)[0]
            ident = struct.unpack_from("!I", fr, at + 4)[0]
            frag = f" frag off={(fo >> 3) * 8}{' MF' if fo & 1 else ''} fragid={ident}"
            later = bool(fo >> 3)
            nh, at = fr[at], at + 8
        elif nh in _EXT and at + 2 <= end:
            nh, at = fr[at], at + (fr[at + 1] + 1) * (4 if nh == 51 else 8)
        else:
            break
    iphdr = f"hopl={hlim} flow={vtf & 0xFFFFF:x} payloadlen={plen}{frag}"
    body = fr[at:end]
    if later:
        return _later_fragment("IPv6", nh, src, dst, iphdr)
    if nh == 6:
        return _tcp(body, src, dst, iphdr, True)
    if nh == 17:
        return _udp(body, src, dst, iphdr)
    if nh == 58 and len(body) >= 4:
        t, code = body[0], body[1]
        extra = ""
        if t in (128, 129) and len(body) >= 8:
            extra = " id=%d seq=%d" % struct.unpack_from("!HH", body, 4)
        elif t in (135, 136) and len(body) >= 24:
            extra = f" target={socket.inet_ntop(socket.AF_INET6, body[8:24])}"
        return f"ICMPv6 (58) {src} > {dst} (type={t}/code={code}) {iphdr}{extra}"
    return f"IPv6 {src} > {dst} proto={nh} {iphdr}"


def _arp(fr: bytes) -> str:
    if len(fr) < 42:
        return "ARP (short)"
    op = struct.unpack_from("!H", fr, 20)[0]
    sha, spa, tpa = fr[22:28], socket.inet_ntoa(fr[28:32]), socket.inet_ntoa(fr[38:42])
    if op == 1:
        return f"ARP who-has {tpa} tell {spa}"
    if op == 2:
        return f"ARP reply {spa} is-at {':'.join(f'{b:02X}' for b in sha)}"
    return f"ARP op={op} {spa} > {tpa}"


def describe(frame: bytes | memoryview) -> str:
    """One Ethernet frame in nmap's --packet-trace words (without SENT/RCVD and the time). Never
    raises: the tracer runs ahead of the scans' own handlers on the receive path, and whatever
    arrives (cut short, lying lengths) must not cost them their block."""
    fr = bytes(frame)
    try:
        if len(fr) < 14:
            return f"(short frame len={len(fr)})"
        et = fr[12:14]
        if et == b"\x08\x00":
            return _ipv4(fr)
        if et == b"\x86\xdd":
            return _ipv6(fr)
        if et == b"\x08\x06":
            return _arp(fr)
        return f"ethertype 0x{et.hex()} len={len(fr)}"
    except (struct.error, ValueError, IndexError, OSError):
        return f"(malformed frame len={len(fr)})"


class PacketTracer:
    """Writes SENT/RCVD lines (stderr by default; `write` for tests and other sinks). Sender
    threads and the event loop both call it, so each line is written whole under a lock."""

    def __init__(self, write: Callable[[str], None] | None = None, t0: float | None = None):
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.t0 = time.monotonic() if t0 is None else t0
        self._lock = threading.Lock()
        self.ours: frozenset[bytes] = frozenset()  # our addresses (ARP lines: only those about us)

    def line(self, what: str, text: str) -> None:
        with self._lock:
            self._write(f"{what} ({time.monotonic() - self.t0:.4f}s) {text}")

    def sent(self, frame: bytes | memoryview) -> None:
        self.line("SENT", describe(frame))

    def rcvd(self, frame: bytes | memoryview) -> None:
        fr = bytes(frame)
        if fr[12:14] == b"\x08\x06" and self.ours and len(fr) >= 42 and fr[38:42] not in self.ours:
            return  # ARP between other hosts of the segment
        self.line("RCVD", describe(fr))

    def sent_rows(self, buf: np.ndarray, start: int, stop: int, lengths: int | np.ndarray) -> None:
        """Rows start..stop-1 of a BatchSender buffer that went out."""
        scalar = np.ndim(lengths) == 0
        for i in range(start, stop):
            n = int(lengths) if scalar else int(np.asarray(lengths)[i])  # type: ignore[arg-type]
            self.sent(buf[i, :n].tobytes())

    def rcvd_block(self, ring: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> None:
        for a, ln in zip(starts.tolist(), lens.tolist()):
            self.rcvd(ring[a:a + ln].tobytes())
