"""IP protocol scan (-sO): which IP protocols a host speaks, from what each probe draws.

One probe per protocol number, with nmap's states and reasons (nmap's scan_engine_raw.cc,
`build_protoscan_packet` and `get_pcap_result`):

- an answer in the probe's own protocol from the target -> open (proto-response); an ICMP echo
  reply -> ICMP open (echo-reply). As in nmap, *any* ICMP message from the target also proves
  ICMP (an ICMP error it sends is ICMP): protocol 1 is open with that message's reason;
- ICMP protocol unreachable (3/2) from the target -> closed (proto-unreach); from a router on the
  way -> filtered;
- ICMP port unreachable (3/3) from the target -> open (port-unreach): the protocol's own handler
  ran and found no port or tunnel (UDP, GRE); from elsewhere -> filtered;
- other ICMP unreachables (0, 1, 9, 10, 13) and time exceeded -> filtered with their reason;
- silence, each time an ICMP error could have been sent -> open|filtered.

Probes: an empty IP payload gets no answer from a stack that has the protocol (it drops the
runt), so as nmap does, ICMP gets an echo request, IGMP a membership query (type 0x11), TCP an
ACK to port 80 (a RST answers), UDP a datagram to port 40125 (port unreachable answers) and SCTP
an INIT to port 80 (ABORT or INIT-ACK answers). hostprint adds GRE (RFC 2784): a 4-byte header
carrying an IPv4 header, which Linux's ip_gre answers with port unreachable when no tunnel
matches; nmap sends GRE an empty payload, which ip_gre drops in silence (open|filtered). Every
other protocol gets a bare IP header (plus --data-length bytes).

Validation: the IP ID of every probe is a keyed cookie of (target, protocol), and ICMP errors
quote it; the TCP ACK's acknowledgement number comes back as the RST's sequence number, the UDP
and SCTP source ports are cookies, SCTP's Initiate Tag comes back as the ABORT's verification
tag, and the echo's id/seq is a cookie. Answers in other protocols carry no cookie: as in nmap,
a packet of that protocol from the target to us proves the protocol.

The ICMP error limiter: closed protocols answer with ICMP errors, which kernels rate-limit per
destination exactly as the port unreachables of a UDP scan (Linux: one per icmp_ratelimit after
a burst of 6). The fair-miss rules, canary and refill pacing of probes/udpscan.py apply
unchanged: this scan is that scan with protocols for ports.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import sctp
from hostprint.engine.checksum import checksum
from hostprint.engine.link import Link, Links
from hostprint.engine.rate import Timing
from hostprint.engine.replies import Reply, Want, icmp_ident
from hostprint.errors import UsageError
from hostprint.model import Json
from hostprint.probes.base import Session, Technique, port_progress
from hostprint.probes.options import ScanOptions
from hostprint.probes.udpscan import FILTER_CODES, UdpScan, _duration

IPPROTO_IGMP, IPPROTO_GRE, IPPROTO_SCTP = 2, 47, 132
#: nmap's probe ports (nmap.h DEFAULT_TCP_PROBE_PORT, DEFAULT_UDP_PROBE_PORT, DEFAULT_SCTP_PROBE_PORT)
TCP_PORT, UDP_PORT, SCTP_PORT = 80, 40125, 80
SALT_ID, SALT_PORT, SALT_TCP, SALT_ICMP, SALT_SCTP = 31, 32, 33, 34, 35
ALL_PROTOCOLS = list(range(256))


# ---------------------------------------------------------------------------- protocol names

def _protocol_files() -> list[str]:
    """nmap's table first (its names are what nmap prints), then netbase's /etc/protocols (IANA
    keywords, fewer entries); as for services, nothing is shipped (services.py)."""
    paths = []
    if os.environ.get("NMAPDIR"):
        paths.append(os.path.join(os.environ["NMAPDIR"], "nmap-protocols"))
    return paths + ["/usr/share/nmap/nmap-protocols", "/usr/local/share/nmap/nmap-protocols", "/etc/protocols"]


@functools.cache
def protocol_names() -> dict[int, str]:
    """Protocol number -> name from the first readable table (empty when there is none)."""
    for path in _protocol_files():
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        out: dict[int, str] = {}
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[1].isdigit() and int(words[1]) < 256:
                n = int(words[1])
                if n not in out or out[n] == "ip":  # /etc/protocols lists "ip 0" before "hopopt 0"
                    out[n] = words[0]
        if out:
            return out
    return {}


def parse_protocols(spec: str) -> list[int]:
    """-p for -sO: numbers 0-255, ranges (`-`, `N-`, `-M`) and protocol names, comma separated."""
    names = {v: k for k, v in protocol_names().items()}
    out: set[int] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"bad protocol spec '{spec}': empty item")
        lo_s, dash, hi_s = item.partition("-")
        if item.isdigit() or (dash and (not lo_s or lo_s.isdigit()) and (not hi_s or hi_s.isdigit())):
            lo = int(lo_s) if lo_s else 0
            hi = int(hi_s) if dash and hi_s else (255 if dash else lo)
            if hi > 255 or lo > hi:
                raise UsageError(f"bad protocol spec '{item}': protocols are 0-255")
            out.update(range(lo, hi + 1))
        elif item.lower() in names:
            out.add(names[item.lower()])
        else:
            raise UsageError(f"bad protocol spec '{item}': not a number 0-255 or a protocol name"
                             + ("" if names else " (no nmap-protocols or /etc/protocols found)"))
    return sorted(out)


# ---------------------------------------------------------------------------- the scan


class IpProtoScan(UdpScan):
    """The UDP scan's machinery (limiter, fair misses, canary, pacing) with protocols for ports."""

    CANARY_REASONS = frozenset({"proto-unreach", "port-unreach"})

    def __init__(self, targets: list[str], protocols: list[int], timing: Timing, *, links: Links | None = None,
                 data_length: int | None = None, source_port: int | None = None, ttl: int = 64,
                 deadline: float | None = None, host_timeout: float | None = None,
                 on_port: Callable[[str, int, str], None] | None = None,
                 note: Callable[[str], None] | None = None):
        super().__init__(targets, protocols, timing, links=links, data_length=data_length, source_port=source_port,
                         ttl=ttl, deadline=deadline, host_timeout=host_timeout, on_port=on_port,
                         note=note)
        #: addresses whose ICMP entry came from another protocol's ICMP error (nmap's rule)
        self.icmp_from_error: set[str] = set()

    # ------------------------------------------------------------------ cookies

    def _key(self, addr: bytes) -> int:
        return int.from_bytes(addr, "big")

    def ipid(self, addr: bytes, proto: int) -> int:
        return self.cookie(self._key(addr), proto, 0, SALT_ID) & 0xFFFF

    def sport(self, addr: str, port: int) -> int:
        if self.fixed_sport is not None:
            return self.fixed_sport
        from hostprint.engine.replies import cookie_port

        return cookie_port(self.cookie, self.sport_lo, self.sport_hi, socket.inet_aton(addr), port, SALT_PORT)

    def tcp_ack(self, addr: bytes, sport: int) -> int:
        return self.cookie(self._key(addr), TCP_PORT, sport, SALT_TCP)

    def sctp_tag(self, addr: bytes, sport: int) -> int:
        return self.cookie(self._key(addr), SCTP_PORT, sport, SALT_SCTP) | 1  # an Initiate Tag is never 0

    # ------------------------------------------------------------------ replies

    def want(self) -> Want:
        return Want(peers=frozenset(socket.inet_aton(a) for a in self.targets),
                    protos=frozenset(self.ports) | {P.IPPROTO_ICMP}, errors=True,
                    icmp_types=frozenset({P.ICMP_ECHOREPLY}), valid=self._valid)

    def _valid(self, r: Reply) -> bool:
        if r.error is not None:
            q = r.quoted
            return (q is not None and isinstance(q[0], P.IPv4) and q[0].proto in self.ports_set
                    and q[0].id == self.ipid(r.peer, q[0].proto))
        if r.proto not in self.ports_set:
            return False
        addr = socket.inet_ntoa(r.peer)
        if r.proto == P.IPPROTO_ICMP:
            m = r.icmp
            return m is not None and (m.id, m.seq) == icmp_ident(self.cookie, r.peer, SALT_ICMP)
        if r.proto == P.IPPROTO_TCP:
            t = r.tcp
            sp = self.sport(addr, P.IPPROTO_TCP)
            return t is not None and t.dport == sp and t.seq == self.tcp_ack(r.peer, sp)
        if r.proto == P.IPPROTO_UDP:
            return r.our_port == self.sport(addr, P.IPPROTO_UDP) and r.their_port == UDP_PORT
        if r.proto == IPPROTO_SCTP and isinstance(r.l4, bytes):
            h = sctp.header(r.l4)
            sp = self.sport(addr, IPPROTO_SCTP)
            return h is not None and h[1] == sp and h[2] == self.sctp_tag(r.peer, sp)
        return True  # another protocol: no field to echo; from the target to us is all nmap asks

    def _classify(self, r: Reply) -> tuple[str, int, tuple[str, str, int], str] | None:
        addr = socket.inet_ntoa(r.peer)
        ttl = r.ip.ttl
        if r.error is None:
            reason = "echo-reply" if r.proto == P.IPPROTO_ICMP else "proto-response"
            return addr, r.proto, (model.OPEN, reason, ttl), "reply"
        from_target = r.ip.src == r.peer
        t, code = r.error.type, r.error.code
        if t == P.ICMP_UNREACH and code in (2, 3):
            reason = "proto-unreach" if code == 2 else "port-unreach"
            state = (model.CLOSED if code == 2 else model.OPEN) if from_target else model.FILTERED
        elif t == P.ICMP_UNREACH and code in FILTER_CODES:
            state, reason = model.FILTERED, FILTER_CODES[code]
        elif t == P.ICMP_TIMXCEED:
            state, reason = model.FILTERED, "time-exceeded"
        else:
            return None
        return addr, r.proto, (state, reason, ttl), "icmp"

    def _on_reply(self, r: Reply) -> None:
        super()._on_reply(r)
        # nmap: any ICMP message from the target shows it speaks ICMP (the echo may be filtered)
        if P.IPPROTO_ICMP not in self.ports_set or r.ip.src != r.peer or r.ip.proto != P.IPPROTO_ICMP:
            return
        addr = socket.inet_ntoa(r.peer)
        key = (addr, P.IPPROTO_ICMP)
        if key in self.result or r.error is None:
            return
        c = self._classify(r)
        if c is None:
            return
        self.result[key] = (model.OPEN, c[2][1], r.ip.ttl)
        self.icmp_from_error.add(addr)
        tgt = self.tgts.get(addr)
        if tgt is not None:
            tgt.pending.pop(P.IPPROTO_ICMP, None)
        if self.on_port is not None:
            self.on_port(addr, P.IPPROTO_ICMP, model.OPEN)

    # ------------------------------------------------------------------ probes

    def _payload(self, link: Link, addr: str, proto: int) -> bytes:
        src, dst = socket.inet_aton(link.src), socket.inet_aton(addr)
        extra = bytes(self.data_length or 0)
        if proto == P.IPPROTO_ICMP:
            ident, seq = icmp_ident(self.cookie, dst, SALT_ICMP)
            return P.ICMP(P.ICMP_ECHO, 0, ident, seq, extra).encode()
        if proto == IPPROTO_IGMP:  # IGMPv2 membership query (RFC 2236): type 0x11, max resp 0, group 0
            body = struct.pack("!BBH4s", 0x11, 0, 0, b"\0" * 4) + extra
            return body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        if proto == P.IPPROTO_TCP:
            sp = self.sport(addr, proto)
            return P.TCP(sp, TCP_PORT, seq=self.cookie(self._key(dst), 0, sp, SALT_TCP ^ 0x55),
                         ack=self.tcp_ack(dst, sp), flags=P.ACK, window=1024, payload=extra).encode(src, dst)
        if proto == P.IPPROTO_UDP:
            return P.UDP(self.sport(addr, proto), UDP_PORT, extra).encode(src, dst)
        if proto == IPPROTO_SCTP:
            sp = self.sport(addr, proto)
            tag = self.sctp_tag(dst, sp)
            return sctp.packet(sp, SCTP_PORT, 0, sctp.init_chunk(tag, tag ^ 0x5A5A5A5A) + extra)
        if proto == IPPROTO_GRE:  # RFC 2784: no flags, version 0, an IPv4 packet follows
            inner = P.IPv4(src, dst, P.IPPROTO_ICMP, id=self.ipid(dst, proto)).encode(len(extra)) + extra
            return struct.pack("!HH", 0, 0x0800) + inner
        return extra

    def _frames(self, link: Link, mac: bytes, addr: str, port: int) -> list[bytes]:
        src, dst = socket.inet_aton(link.src), socket.inet_aton(addr)
        ip = P.IPv4(src, dst, port, id=self.ipid(dst, port), ttl=self.ttl)
        return [P.build_frame(link.eth(mac), ip, self._payload(link, addr, port))]

    # ------------------------------------------------------------------ results

    def results(self, addr: str) -> list[model.PortResult]:
        names = protocol_names()
        out = []
        for proto in self.ports:
            st = self.result.get((addr, proto))
            state, reason, ttl = st if st is not None else (model.OPEN_FILTERED, "no-response", 0)
            svc = model.Service(name=names.get(proto), method="port-table", confidence=0.8) if proto in names else None
            out.append(model.PortResult(proto, "ip", state, reason, ttl or None, svc))
        return out

    def warning(self, addr: str) -> str | None:
        tgt = self.tgts.get(addr)
        if tgt is None or not tgt.unconfirmed:
            return None
        lim = self.limiter(addr) or {}
        iv = lim.get("interval_s")
        limit = ("ICMP protocol-unreachable limit" + (f": burst {lim['burst']}" if isinstance(lim.get("burst"), int) else "")
                 + (f", then 1 per {iv:.2f} s" if isinstance(iv, (int, float)) else ""))
        n = tgt.unconfirmed
        return (f"{n} IP {'protocol' if n == 1 else 'protocols'} not confirmed within --host-timeout "
                f"{self.host_timeout or 0:g}s: {limit}; reported as open|filtered (closed ones may be among them)")

    def _maybe_note(self, tgt: Any) -> None:
        r = tgt.refill
        if tgt.noted or r is None or self.note is None or self.notes_left <= 0 or len(tgt.pending) * r < 20:
            return
        tgt.noted = True
        self.notes_left -= 1
        self.note(f"{tgt.addr} sends 1 ICMP error per {r:.2f} s: confirming its {len(tgt.pending)} silent "
                  f"protocols takes ~{_duration(len(tgt.pending) * r)}")


class IpProtoTechnique(Technique[list[model.PortResult]]):
    """-sO through the contract of probes/base.py: results are PortResults of protocol "ip"."""

    name = "ipproto"
    label = "IP protocol scan"
    phase = 10

    def __init__(self, options: ScanOptions):
        self.options = options
        self.protocols = options.ports.get("ip", [])
        self.warnings: dict[str, str] = {}

    @classmethod
    def create(cls, options: ScanOptions) -> Sequence[Technique[Any]]:
        if "ipproto" not in options.scan_kinds or not options.ports.get("ip"):
            return []
        if options.fragment:
            raise UsageError("-f: the IP protocol scan (-sO) sends no fragments; drop -f")
        return [cls(options)]

    async def probe(self, hosts: Sequence[model.HostResult], session: Session) -> Mapping[str, list[model.PortResult]]:
        addrs = [h.address for h in hosts]
        task = session.progress.phase(self.label, len(addrs) * len(self.protocols))
        o = self.options
        on_port = port_progress(session, task, "ip")
        scan = self._scan = IpProtoScan(addrs, self.protocols, session.timing, links=session.links,
                           data_length=o.data_length or None, source_port=o.source_port, ttl=o.ttl or 64,
                           deadline=session.deadline, host_timeout=session.host_timeout, on_port=on_port,
                           note=session.progress.note)
        await scan.run()
        session.progress.finish(task)
        limits: dict[str, Json] = {a: lim for a in addrs if (lim := scan.limiter(a)) is not None}
        session.stats[self.name] = {"probes": scan.probes, "icmp_limit": limits}
        self.warnings = {a: w for a in addrs if (w := scan.warning(a)) is not None}
        return {a: scan.results(a) for a in addrs}

    def record(self, host: model.HostResult, result: list[model.PortResult]) -> None:
        host.ports.extend(result)
        w = self.warnings.get(host.address)
        if w:
            host.warnings.append(w)

    _scan: IpProtoScan | None = None  # the scan in progress (partial() reads it)

    def partial(self) -> dict[str, list[model.PortResult]]:
        scan = self._scan
        return {} if scan is None else {a: scan.decided(a) for a in scan.targets}
