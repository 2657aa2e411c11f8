"""Host discovery: which addresses answer, and to which kinds of probe.

The survey's techniques, each a `Method` that builds one probe per target and recognises its
answers: ICMP echo (8 -> 0), broadcast echo (to the on-link broadcast address; every host that
answers is alive), ICMP timestamp (13 -> 14), ICMP address mask (17 -> 18), TCP SYN sweep (SYN-ACK
or RST => alive), TCP ACK sweep (RST => alive), UDP sweep (ICMP port unreachable => alive) and ARP
on the local segment. Reasons name the method: echo-reply, broadcast-echo-reply, timestamp-reply,
mask-reply, syn-ack / syn-reset, ack-reset, port-unreach / udp-response, arp-response. A host reports every method that saw it, because the mix is itself
evidence (a host that answers TCP but not ICMP sits behind a filter).

Probes carry a cookie (ICMP id/seq, TCP seq/ack, UDP source port) so answers need no table.
The volume is small (targets x methods), so frames are built one by one with the struct codecs.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Link, Links, until_quiet
from hostprint.engine.rate import Pacer, Timing

UDP_SWEEP_PORT = 40125  # an unlikely-to-be-open port, so the answer is ICMP port unreachable
# Answers that are ICMP errors (port unreachable) pass Linux's global ICMP limiter: a bucket of
# net.ipv4.icmp_msgs_burst (50) refilled at most every 20 ms, i.e. <= 2,500 errors/s per kernel
# whatever icmp_msgs_per_sec says (measured here: at 20 k probes/s only 109 of 210 addresses of one
# kernel answered a UDP sweep). The UDP sweep is paced below that.
ICMP_ERROR_RATE = 2000


@dataclass
class Seen:
    reasons: list[str] = field(default_factory=list)
    ttl: int | None = None
    rtt_us: float | None = None
    mac: str | None = None
    details: dict[str, object] = field(default_factory=dict)  # e.g. timestamp values, mask


@dataclass(frozen=True)
class MethodSpec:
    name: str  # echo, broadcast, timestamp, mask, syn, ack, udp, arp
    port: int = 0


DEFAULT_METHODS = [MethodSpec("arp"), MethodSpec("echo"), MethodSpec("timestamp"), MethodSpec("mask"),
                   MethodSpec("syn", 443), MethodSpec("ack", 80), MethodSpec("udp", UDP_SWEEP_PORT),
                   MethodSpec("broadcast")]
SALT = {"echo": 1, "timestamp": 2, "mask": 3, "syn": 4, "ack": 5, "udp": 6, "broadcast": 7}


class Discovery:
    def __init__(self, targets: list[str], methods: list[MethodSpec], timing: Timing, *,
                 links: Links | None = None, retries: int = 1):
        self.targets = targets
        self.methods = methods
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.retries = retries
        self.cookie = Cookie()
        self.sport_lo, self.sport_hi = route.probe_port_range()
        self.seen: dict[str, Seen] = {}
        self.sent_ns: dict[tuple[str, str], int] = {}
        self.target_set = set(targets)
        self.last_reply = 0.0
        self.macs: dict[str, bytes | None] = {}
        self.bcast_idents: set[tuple[int, int]] = set()
        self.bcast_sent_ns = 0

    # ------------------------------------------------------------------ bookkeeping

    def _saw(self, addr: str, reason: str, ts: int, ttl: int | None, key: str, **details: object) -> None:
        if addr not in self.target_set:
            return
        s = self.seen.setdefault(addr, Seen())
        if reason not in s.reasons:
            s.reasons.append(reason)
        if ttl is not None and s.ttl is None:
            s.ttl = ttl
        sent = self.sent_ns.get((addr, key))
        if sent and ts > sent:
            rtt = (ts - sent) / 1000
            if s.rtt_us is None or rtt < s.rtt_us:
                s.rtt_us = rtt
        s.details.update(details)
        self.last_reply = time.monotonic()

    def _icmp_ident(self, addr: str, method: str) -> tuple[int, int]:
        c = self.cookie(P.ip_to_int(addr), 0, 0, SALT[method])
        return c >> 16, c & 0xFFFF

    # ------------------------------------------------------------------ receive

    def _on_frame(self, ts: int, fr: memoryview) -> None:
        try:
            p = P.decode_frame(fr)
        except P.DecodeError:
            return
        if p.arp is not None:
            if p.arp.op == 2:
                a = socket.inet_ntoa(p.arp.spa)
                if a in self.target_set and "arp" in self._enabled:
                    self._saw(a, "arp-response", ts, None, "arp", mac=P.mac_str(p.arp.sha))
                    self.seen[a].mac = P.mac_str(p.arp.sha)
            return
        ip = p.ip
        if ip is None:
            return
        src = socket.inet_ntoa(ip.src)
        l4 = p.l4
        if isinstance(l4, P.ICMP):
            if l4.type == P.ICMP_ECHOREPLY:
                if "echo" in self._enabled and (l4.id, l4.seq) == self._icmp_ident(src, "echo"):
                    self._saw(src, "echo-reply", ts, ip.ttl, "echo")
                elif (l4.id, l4.seq) in self.bcast_idents:
                    self.sent_ns.setdefault((src, "broadcast"), self.bcast_sent_ns)
                    self._saw(src, "broadcast-echo-reply", ts, ip.ttl, "broadcast")
            elif l4.type == P.ICMP_TSTAMPREPLY and "timestamp" in self._enabled:
                if (l4.id, l4.seq) == self._icmp_ident(src, "timestamp"):
                    self._saw(src, "timestamp-reply", ts, ip.ttl, "timestamp",
                              timestamp={"recv": l4.recv, "xmit": l4.xmit})
            elif l4.type == P.ICMP_MASKREPLY and "mask" in self._enabled:
                if (l4.id, l4.seq) == self._icmp_ident(src, "mask"):
                    self._saw(src, "mask-reply", ts, ip.ttl, "mask", mask=socket.inet_ntoa(l4.mask))
            elif l4.type == P.ICMP_UNREACH and "udp" in self._enabled:
                q = l4.quoted_packet()
                if q is None:
                    return
                qip, rest = q
                dst = socket.inet_ntoa(qip.dst)
                if qip.proto == P.IPPROTO_UDP and len(rest) >= 4:
                    if int.from_bytes(rest[0:2], "big") == self._udp_sport(dst):
                        reason = "port-unreach" if l4.code == 3 else "icmp-unreach"
                        self._saw(dst, reason, ts, ip.ttl, "udp")
        elif isinstance(l4, P.TCP):
            if not self.sport_lo <= l4.dport <= self.sport_hi:
                return
            for m in ("syn", "ack"):
                if m not in self._enabled:
                    continue
                c = self.cookie(P.ip_to_int(src), l4.sport, l4.dport, SALT[m])
                if m == "syn" and l4.ack == (c + 1) & 0xFFFFFFFF:
                    self._saw(src, "syn-ack" if l4.flags & P.SYN else "syn-reset", ts, ip.ttl, m)
                elif m == "ack" and l4.flags & P.RST and l4.seq == c:
                    self._saw(src, "ack-reset", ts, ip.ttl, m)
        elif isinstance(l4, P.UDP) and "udp" in self._enabled:
            if l4.dport == self._udp_sport(src):
                self._saw(src, "udp-response", ts, ip.ttl, "udp")

    def _udp_sport(self, addr: str) -> int:
        span = self.sport_hi - self.sport_lo + 1
        return self.sport_lo + self.cookie(P.ip_to_int(addr), UDP_SWEEP_PORT, 0, SALT["udp"]) % span

    # ------------------------------------------------------------------ send

    def _frames(self, link: Link, addr: str, mac: bytes, m: MethodSpec) -> list[bytes]:
        src = socket.inet_aton(link.src)
        dst = socket.inet_aton(addr)
        eth = link.eth(mac)
        ipid = self.cookie(P.ip_to_int(addr), m.port, 0, 99) & 0xFFFF
        if m.name in ("echo", "broadcast"):
            i, s = self._icmp_ident(addr, m.name)
            return [P.build_frame(eth, P.IPv4(src, dst, P.IPPROTO_ICMP, id=ipid), P.ICMP(P.ICMP_ECHO, 0, i, s, b""))]
        if m.name == "timestamp":
            i, s = self._icmp_ident(addr, "timestamp")
            return [P.build_frame(eth, P.IPv4(src, dst, P.IPPROTO_ICMP, id=ipid), P.ICMP(P.ICMP_TSTAMP, 0, i, s))]
        if m.name == "mask":
            i, s = self._icmp_ident(addr, "mask")
            return [P.build_frame(eth, P.IPv4(src, dst, P.IPPROTO_ICMP, id=ipid), P.ICMP(P.ICMP_MASKREQ, 0, i, s))]
        if m.name in ("syn", "ack"):
            sport = self.sport_lo + (ipid % (self.sport_hi - self.sport_lo + 1))
            c = self.cookie(P.ip_to_int(addr), m.port, sport, SALT[m.name])
            if m.name == "syn":
                tcp = P.TCP(sport, m.port, c, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)])
            else:
                tcp = P.TCP(sport, m.port, 0, c, P.ACK, 1024)
            return [P.build_frame(eth, P.IPv4(src, dst, P.IPPROTO_TCP, id=ipid), tcp)]
        if m.name == "udp":
            return [P.build_frame(eth, P.IPv4(src, dst, P.IPPROTO_UDP, id=ipid), P.UDP(self._udp_sport(addr), m.port, b""))]
        return []

    def _broadcast_targets(self) -> dict[str, tuple[Link, str]]:
        """On-link networks that contain targets -> (link, broadcast address)."""
        out: dict[str, tuple[Link, str]] = {}
        tab = route.table()
        for net, r in tab.routes:
            if r.get("gateway") or net.prefixlen == 0 or net.prefixlen >= 31:
                continue
            if any(ipaddress.IPv4Address(t) in net for t in self.targets):
                rr = route.Route(r["dev"], r.get("prefsrc") or tab.addrs.get(r["dev"], [""])[0], None)
                if rr.iface == "lo" or not rr.src:
                    continue
                out[str(net.broadcast_address)] = (self.links.for_route(rr), str(net.broadcast_address))
        return out

    async def run(self) -> dict[str, Seen]:
        self._enabled = {m.name for m in self.methods}
        tab = route.table()
        plan: list[tuple[Link, str, route.Route]] = []
        for a in self.targets:
            r = tab.lookup(a)
            plan.append((self.links.for_route(r), a, r))
        links = {id(link): link for link, _, _ in plan}
        for link in links.values():
            link.subscribe(self._on_frame)
        pacer = Pacer(min(self.timing.rate, 20_000), burst=256)
        try:
            # ARP first: it also gives the MACs every other on-link probe needs.
            onlink = [(link, a) for link, a, r in plan if r.gateway is None and not link.loopback]
            arp_wanted = "arp" in self._enabled
            for attempt in range(self.retries + 1):
                pending = [(link, a) for link, a in onlink if link.neigh.get(a) is None]
                for link, a in pending:
                    await pacer.budget(1)
                    self.sent_ns.setdefault((a, "arp"), time.time_ns())
                    link.send(link.arp_request_frame(a))
                if pending:
                    await until_quiet(list(links.values()), self._wait(), lambda: self.last_reply, quiet=0.05)
            for link, a in onlink:
                self.macs[a] = link.neigh.get(a)
                if arp_wanted and self.macs[a] is not None and a not in self.seen:
                    self._saw(a, "arp-response", 0, None, "arp")
            gw_macs: dict[str, bytes | None] = {}
            for link, a, r in plan:
                if link.loopback:
                    self.macs[a] = b"\0" * 6
                elif r.gateway:
                    if r.gateway not in gw_macs:
                        gw_macs[r.gateway] = await link.resolve(r.gateway)
                    self.macs[a] = gw_macs[r.gateway]
            l3 = [m for m in self.methods if m.name not in ("arp", "broadcast")]
            slow = Pacer(min(self.timing.rate, ICMP_ERROR_RATE), burst=16)
            for attempt in range(self.retries + 1):
                n = 0
                for m in l3:
                    mp = slow if m.name == "udp" else pacer
                    for link, a, r in plan:
                        mac = self.macs.get(a)
                        if mac is None:
                            continue
                        s = self.seen.get(a)
                        if attempt and s and any(self._reason_of(m.name, x) for x in s.reasons):
                            continue
                        for fr in self._frames(link, a, mac, m):
                            await mp.budget(1)
                            self.sent_ns.setdefault((a, m.name), time.time_ns())
                            link.send(fr)
                            n += 1
                if "broadcast" in self._enabled and attempt == 0:
                    n += await self._send_broadcast(pacer)
                if n or attempt == 0:
                    await until_quiet(list(links.values()), self._wait(), lambda: self.last_reply, quiet=0.05)
        finally:
            for link in links.values():
                link.unsubscribe(self._on_frame)
            if self.own_links:
                self.links.close()
        return self.seen

    async def _send_broadcast(self, pacer: Pacer) -> int:
        """One echo per on-link broadcast address; its ICMP id/seq is the cookie of that broadcast
        address, and any target that answers with it was reached by the broadcast."""
        n = 0
        for bcast, (link, _) in self._broadcast_targets().items():
            i, s = self._icmp_ident(bcast, "broadcast")
            self.bcast_idents.add((i, s))
            fr = P.build_frame(link.eth(b"\xff" * 6),
                               P.IPv4(socket.inet_aton(link.src), socket.inet_aton(bcast), P.IPPROTO_ICMP),
                               P.ICMP(P.ICMP_ECHO, 0, i, s))
            self.bcast_sent_ns = time.time_ns()
            await pacer.budget(1)
            link.send(fr)
            n += 1
        return n

    @staticmethod
    def _reason_of(method: str, reason: str) -> bool:
        return {"echo": reason == "echo-reply", "timestamp": reason == "timestamp-reply",
                "mask": reason == "mask-reply", "syn": reason in ("syn-ack", "syn-reset"),
                "ack": reason == "ack-reset", "udp": reason in ("port-unreach", "udp-response", "icmp-unreach")}.get(method, False)

    def _wait(self) -> float:
        """How long silence means "no answer": the template's initial RTT timeout until someone
        answers, then four times the largest RTT seen (kernel timestamps), within the template's
        bounds, as the scans' RFC 6298-style timeouts do."""
        rtts = [s.rtt_us for s in self.seen.values() if s.rtt_us]
        if not rtts:
            return self.timing.initial_rtt
        return min(max(4 * max(rtts) / 1e6, self.timing.min_rtt), self.timing.initial_rtt)



def host_results(targets: list[str], seen: dict[str, Seen]) -> list[model.HostResult]:
    out = []
    for a in targets:
        s = seen.get(a)
        if s is None:
            out.append(model.HostResult(a, "down", ["no-response"]))
            continue
        h = model.HostResult(a, "up", list(s.reasons), mac=s.mac, rtt_us=s.rtt_us)
        if s.ttl is not None:
            from hostprint.probes.tcpscan import guess_distance
            h.distance = guess_distance(s.ttl)
        if s.details:
            h.os.setdefault("discovery", {}).update({k: v for k, v in s.details.items() if k != "mac"})
        out.append(h)
    return out
