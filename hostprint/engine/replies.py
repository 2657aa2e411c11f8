"""Reply validation in one place: a probe says which replies it wants, the link hands it decoded,
cookie-checked replies.

Every probe used to decode each frame itself and repeat the same filters (source in my targets,
port in my range, an ICMP error quoting one of my probes, the cookie echoed). Now a probe
subscribes a `Want` with `Link.listen()`; the link decodes each frame once, works out which
probe it answers (for an ICMP error: the quoted packet's destination and ports) and calls the
handlers whose Want matches, after the Want's cookie check. The checks themselves are the
functions at the bottom: the keyed cookie of engine/cookie.py echoed back in an ACK number, a
sequence number, a source port or an ICMP id/seq.

Both families: an IPv6 reply has a 16-byte `peer`, an `ipv6.IPv6` header (its `ttl` is the hop
limit) and, for ICMPv6, `icmp6` instead of `icmp`; an ICMPv6 error quoting our probe is matched
by its quote as an ICMP error is. Probes ask the family-neutral questions (`dest_unreach`,
`port_unreach`, `unreach_reason`, `time_exceeded`) so that one handler serves both; the cookie of
an IPv6 address is taken over its keyed 32-bit fold (`addr_key`), IPv4 values are unchanged.

The bulk TCP port scan keeps its own vectorised path over whole ring blocks (probes/tcpscan.py):
there the same cookie check runs in numpy on thousands of replies at once.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from hostprint.engine import icmpv6 as I6
from hostprint.engine import packets as P
from hostprint.engine.cookie import Cookie
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, IPv6

#: nmap's reason words for ICMP destination unreachable codes (IPv4) …
UNREACH_REASONS = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                   9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
#: … and for ICMPv6's (nmap's scan_engine_raw.cc / reason.cc icmpv6_to_reason)
UNREACH6_REASONS = {0: "no-route", 1: "admin-prohibited", 2: "beyond-scope", 3: "host-unreach", 4: "port-unreach",
                    5: "admin-prohibited", 6: "reject-route"}


@dataclass(slots=True)
class Reply:
    """One frame that answers a probe, decoded once."""

    ts_ns: int  # kernel receive time
    ip: P.IPv4 | IPv6  # the reply's IP header
    l4: P.TCP | P.UDP | P.ICMP | I6.ICMPv6 | bytes  # the reply's transport (bytes: another IP protocol's payload)
    raw: bytes  # the IP packet as received
    peer: bytes  # the probed address: the reply's source, or the quoted destination of an ICMP error
    proto: int  # the protocol of the probe it answers (the quoted one for an ICMP error)
    our_port: int | None  # our side: TCP/UDP destination port, or the quoted source port
    their_port: int | None  # the probed port: TCP/UDP source port, or the quoted destination port
    error: P.ICMP | I6.ICMPv6 | None = None  # the ICMP(v6) error, when the reply is one
    quoted: tuple[P.IPv4 | IPv6, bytes] | None = None  # the error's quoted IP header and what follows

    @property
    def ts(self) -> float:
        return self.ts_ns / 1e9

    @property
    def family(self) -> int:
        return 6 if len(self.peer) == 16 else 4

    @property
    def address(self) -> str:
        """The probed address as text (either family)."""
        return addr_text(self.peer)

    @property
    def tcp(self) -> P.TCP | None:
        return self.l4 if isinstance(self.l4, P.TCP) else None

    @property
    def icmp(self) -> P.ICMP | None:
        return self.l4 if isinstance(self.l4, P.ICMP) else None

    @property
    def icmp6(self) -> I6.ICMPv6 | None:
        return self.l4 if isinstance(self.l4, I6.ICMPv6) else None

    @property
    def dest_unreach(self) -> bool:
        """An ICMP or ICMPv6 destination unreachable."""
        e = self.error
        return e is not None and e.type == (P.ICMP_UNREACH if isinstance(e, P.ICMP) else I6.DST_UNREACH)

    @property
    def port_unreach(self) -> bool:
        e = self.error
        return self.dest_unreach and e is not None and e.code == (3 if isinstance(e, P.ICMP) else I6.UNREACH_PORT)

    @property
    def time_exceeded(self) -> bool:
        e = self.error
        return e is not None and e.type == (P.ICMP_TIMXCEED if isinstance(e, P.ICMP) else I6.TIME_EXCEEDED)

    @property
    def unreach_reason(self) -> str:
        """nmap's reason word for a destination unreachable ("unreach" for other errors)."""
        e = self.error
        if e is None or not self.dest_unreach:
            return "unreach"
        if isinstance(e, P.ICMP):
            return UNREACH_REASONS.get(e.code, "unreach")
        return UNREACH6_REASONS.get(e.code, "dest-unreach")

    @property
    def quoted_icmp(self) -> tuple[int, int] | None:
        """(type, id) of the ICMP (or ICMPv6) query an ICMP error quotes."""
        if self.quoted is None or len(self.quoted[1]) < 6:
            return None
        want = P.IPPROTO_ICMP if isinstance(self.quoted[0], P.IPv4) else IPPROTO_ICMPV6
        if self.quoted[0].proto != want:
            return None
        return self.quoted[1][0], struct.unpack_from("!H", self.quoted[1], 4)[0]


def addr_bytes(addr: str) -> bytes:
    """4 or 16 bytes of an address of either family (a %zone is dropped)."""
    if ":" in addr:
        return socket.inet_pton(socket.AF_INET6, addr.partition("%")[0])
    return socket.inet_aton(addr)


def addr_text(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, b) if len(b) == 16 else socket.inet_ntoa(b)


def addr_key(cookie: Cookie, addr: bytes | str) -> int:
    """What stands for an address in a cookie: the IPv4 address itself, an IPv6 address's keyed
    32-bit fold (cookie.Cookie.fold6), so a 128-bit address never reaches the 64-bit mixer raw."""
    b = addr_bytes(addr) if isinstance(addr, str) else addr
    return cookie.fold6(b) if len(b) == 16 else int.from_bytes(b, "big")


#: ICMP types that are errors quoting the packet that caused them (RFC 792).
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})


@dataclass(frozen=True)
class Want:
    """The replies one probe wants.

    peers: the probed addresses (4 or 16 bytes each), None for any; protos: the probe protocols
    (TCP, UDP, ICMP, ICMPv6 = 58); our_ports: our side's port range (TCP/UDP replies and the quoted source
    port of ICMP errors); errors: ICMP errors quoting a matching probe; icmp_types: replies to
    ICMP queries (echo reply 0, timestamp reply 14, mask reply 18, information reply 16);
    valid: the probe kind's cookie check (one of the functions below), run last."""

    peers: frozenset[bytes] | None = None
    protos: frozenset[int] = frozenset({P.IPPROTO_TCP, P.IPPROTO_UDP, P.IPPROTO_ICMP})
    our_ports: tuple[int, int] | None = None
    errors: bool = True
    icmp_types: frozenset[int] = frozenset()
    valid: Callable[[Reply], bool] | None = None

    def accepts(self, r: Reply) -> bool:
        if r.proto not in self.protos or (self.peers is not None and r.peer not in self.peers):
            return False
        if r.error is not None:
            if not self.errors:
                return False
        elif r.proto in (P.IPPROTO_ICMP, IPPROTO_ICMPV6):
            icmp = r.icmp or r.icmp6
            if icmp is None or icmp.type not in self.icmp_types:
                return False
        if self.our_ports is not None and r.proto not in (P.IPPROTO_ICMP, IPPROTO_ICMPV6):
            if r.our_port is None or not self.our_ports[0] <= r.our_port <= self.our_ports[1]:
                return False
        return self.valid is None or self.valid(r)


Handler = Callable[[Reply], None]


def decode_reply(ts_ns: int, fr: bytes | memoryview) -> Reply | None:
    """The reply a frame carries, or None (not IPv4 or IPv6, a fragment, malformed, or an ICMP error
    whose quote says nothing about our probe). Protocols other than TCP/UDP/ICMP/ICMPv6 come with
    their payload as bytes (the IP protocol scan's answers); Wants that do not name them never see them."""
    if len(fr) >= 14 and fr[12] == 0x86 and fr[13] == 0xDD:
        return _decode_reply6(ts_ns, fr)
    try:
        p = P.decode_frame(fr)
    except P.DecodeError:
        return None
    ip, l4 = p.ip, p.l4
    if ip is None or l4 is None:
        return None
    raw = bytes(fr[14:])
    if isinstance(l4, bytes):
        if ip.frag or ip.mf or ip.proto in (P.IPPROTO_TCP, P.IPPROTO_UDP, P.IPPROTO_ICMP):
            return None
        return Reply(ts_ns, ip, l4, raw, ip.src, ip.proto, None, None)
    if isinstance(l4, (P.TCP, P.UDP)):
        proto = P.IPPROTO_TCP if isinstance(l4, P.TCP) else P.IPPROTO_UDP
        return Reply(ts_ns, ip, l4, raw, ip.src, proto, l4.dport, l4.sport)
    if l4.type in ICMP_ERRORS:
        q = l4.quoted_packet()
        if q is None:
            return None
        qip, rest = q
        ours = theirs = None
        if qip.proto in (P.IPPROTO_TCP, P.IPPROTO_UDP) and len(rest) >= 4:
            ours, theirs = struct.unpack_from("!HH", rest)
        return Reply(ts_ns, ip, l4, raw, qip.dst, qip.proto, ours, theirs, error=l4, quoted=q)
    return Reply(ts_ns, ip, l4, raw, ip.src, P.IPPROTO_ICMP, None, None)


def _decode_reply6(ts_ns: int, fr: bytes | memoryview) -> Reply | None:
    from hostprint.engine.frames import decode_ip6_packet

    try:
        ip, l4 = decode_ip6_packet(fr, 14)
    except P.DecodeError:
        return None
    raw = bytes(fr[14:])
    if isinstance(l4, (P.TCP, P.UDP)):
        proto = P.IPPROTO_TCP if isinstance(l4, P.TCP) else P.IPPROTO_UDP
        return Reply(ts_ns, ip, l4, raw, ip.src, proto, l4.dport, l4.sport)
    if not isinstance(l4, I6.ICMPv6):
        return None
    if l4.type in I6.ERRORS:
        q = l4.quoted_packet()
        if q is None:
            return None
        qip, rest = q
        if not isinstance(qip, IPv6):
            return None
        ours = theirs = None
        if qip.proto in (P.IPPROTO_TCP, P.IPPROTO_UDP) and len(rest) >= 4:
            ours, theirs = struct.unpack_from("!HH", rest)
        return Reply(ts_ns, ip, l4, raw, qip.final_dst(), qip.proto or 0, ours, theirs, error=l4, quoted=(qip, rest))
    return Reply(ts_ns, ip, l4, raw, ip.src, IPPROTO_ICMPV6, None, None)


def dispatch(listeners: list[tuple[Want, Handler]]) -> Callable[[int, memoryview], None]:
    """A link frame handler that decodes once and feeds every listener whose Want accepts."""
    def on_frame(ts_ns: int, fr: memoryview) -> None:
        r = decode_reply(ts_ns, fr)
        if r is None:
            return
        for want, handler in listeners:
            try:
                if want.accepts(r):
                    handler(r)
            except Exception:  # noqa: BLE001 - one bad frame or handler must not stop the others
                pass
    return on_frame


# ---------------------------------------------------------------------------- the cookie checks
# A probe's identity is a keyed hash of (probed address, probed port, our port, salt) put in a
# field the reply must echo (engine/cookie.py). Each check recomputes it from the reply alone.


def _key(cookie: Cookie, r: Reply) -> int:
    return addr_key(cookie, r.peer)


def acks_cookie(cookie: Cookie, salt: int = 0, delta: int = 1) -> Callable[[Reply], bool]:
    """A TCP reply whose ACK is our SYN's (or probe's) sequence cookie + delta."""
    def check(r: Reply) -> bool:
        t = r.tcp
        return (t is not None and r.their_port is not None and r.our_port is not None
                and t.ack == (cookie(_key(cookie, r), r.their_port, r.our_port, salt) + delta) & 0xFFFFFFFF)
    return check


def seq_is_cookie(cookie: Cookie, salt: int = 0) -> Callable[[Reply], bool]:
    """A RST whose sequence number is our ACK probe's acknowledgement cookie (RFC 793 p. 36)."""
    def check(r: Reply) -> bool:
        t = r.tcp
        return (t is not None and r.their_port is not None and r.our_port is not None
                and t.seq == cookie(_key(cookie, r), r.their_port, r.our_port, salt))
    return check


def cookie_port(cookie: Cookie, lo: int, hi: int, addr: bytes, port: int, salt: int) -> int:
    """Our source port toward addr:port, a cookie inside [lo, hi]."""
    return lo + cookie(addr_key(cookie, addr), port, 0, salt) % (hi - lo + 1)


def port_is_cookie(cookie: Cookie, lo: int, hi: int, salt: int) -> Callable[[Reply], bool]:
    """A UDP answer (or an ICMP error quoting our datagram) to the source port cookie_port()
    chose for that address and port."""
    def check(r: Reply) -> bool:
        return (r.our_port is not None and r.their_port is not None
                and r.our_port == cookie_port(cookie, lo, hi, r.peer, r.their_port, salt))
    return check


def icmp_ident(cookie: Cookie, addr: bytes, salt: int) -> tuple[int, int]:
    """(id, seq) of our ICMP (or ICMPv6) query to addr."""
    c = cookie(addr_key(cookie, addr), 0, 0, salt)
    return c >> 16, c & 0xFFFF


def ident_is_cookie(cookie: Cookie, salt: int) -> Callable[[Reply], bool]:
    """An ICMP (or ICMPv6) query reply whose id/seq is our query's cookie for its source."""
    def check(r: Reply) -> bool:
        m = r.icmp or r.icmp6
        return m is not None and r.error is None and (m.id, m.seq) == icmp_ident(cookie, r.peer, salt)
    return check
