"""Host discovery: which addresses answer, and to which kinds of probe.

The survey's techniques, each a `Method` that builds one probe per target and recognises its
answers: ICMP echo (8 -> 0), broadcast echo (to the on-link broadcast address; every host that
answers is alive), ICMP timestamp (13 -> 14), ICMP address mask (17 -> 18), TCP SYN sweep (SYN-ACK
or RST => alive), TCP ACK sweep (RST => alive), UDP sweep (ICMP port unreachable => alive) and ARP
on the local segment. Reasons name the method: echo-reply, broadcast-echo-reply, timestamp-reply,
mask-reply, syn-ack / syn-reset, ack-reset, port-unreach / udp-response, arp-response. A host reports every method that saw it, because the mix is itself
evidence (a host that answers TCP but not ICMP sits behind a filter).

IPv6 targets (mixed lists work): ICMPv6 echo (128 -> 129, echo-reply), Neighbor Discovery in
place of ARP (an NS to the target's solicited-node group, a valid NA back: nd-response, nmap's
word; -PR), the TCP and UDP sweeps as for IPv4 (an ICMPv6 port unreachable is port-unreach), and
in place of the broadcast echo one echo to the all-nodes group ff02::1 per link
(multicast-echo-reply): every IPv6 host of the link answers it, which is how an IPv6 link is
discovered at all (its /64 cannot be swept). IPv6 has no timestamp or address mask query.

Probes carry a cookie (ICMP id/seq, TCP seq/ack, UDP source port) so answers need no table.
The volume is small (targets x methods), so frames are built one by one with the struct codecs.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.fragment import fragment_frame
from hostprint.engine.link import Link, Links, until_quiet
from hostprint.engine.rate import Pacer, Timing
from hostprint.engine.replies import (
    Reply,
    Want,
    acks_cookie,
    addr_bytes,
    cookie_port,
    icmp_ident,
    ident_is_cookie,
    port_is_cookie,
    seq_is_cookie,
)
from hostprint.probes import discovery6 as D6
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions
from hostprint.stackfacts import distance

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
                 links: Links | None = None, retries: int = 1, frag_size: int = 0):
        self.targets = targets
        self.frag_size = frag_size  # -f/--mtu: the IP probes (not ARP/ND) cut into fragments of this size
        self.methods = methods
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.retries = retries
        self.cookie = Cookie()
        self.salts = SALT  # per-method cookie salts (probes/discovery6.py reads them here)
        self.sport_lo, self.sport_hi = route.probe_port_range()
        self.seen: dict[str, Seen] = {}
        self.sent_ns: dict[tuple[str, str], int] = {}
        self.target_set = set(targets)
        self.by_raw = {addr_bytes(a): a for a in targets}  # reply peer -> target as typed (zones kept)
        self.last_reply = 0.0
        self.macs: dict[str, bytes | None] = {}
        self.bcast_idents: set[tuple[int, int]] = set()
        self.bcast_sent_ns = 0
        self.on_up: Callable[[str], None] | None = None  # the first answer of each host (progress)

    # ------------------------------------------------------------------ bookkeeping

    def _saw(self, addr: str, reason: str, ts: int, ttl: int | None, key: str, **details: object) -> None:
        if addr not in self.target_set:
            return
        if addr not in self.seen and self.on_up is not None:
            self.on_up(addr)
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
        return icmp_ident(self.cookie, addr_bytes(addr), SALT[method])

    def _addr(self, peer: bytes) -> str:
        return self.by_raw.get(peer) or socket.inet_ntop(socket.AF_INET6 if len(peer) == 16 else socket.AF_INET, peer)

    # ------------------------------------------------------------------ receive

    def _on_arp(self, ts: int, fr: memoryview) -> None:
        if len(fr) < 42 or fr[12] != 0x08 or fr[13] != 0x06:
            return
        try:
            arp = P.decode_arp(fr, 14)
        except P.DecodeError:
            return
        if arp.op == 2 and "arp" in self._enabled:
            a = socket.inet_ntoa(arp.spa)
            if a in self.target_set:
                self._saw(a, "arp-response", ts, None, "arp", mac=P.mac_str(arp.sha))
                self.seen[a].mac = P.mac_str(arp.sha)

    def _wants(self) -> list[tuple[Want, Callable[[Reply], None]]]:
        """One Want per enabled method: the engine checks the method's cookie (engine/replies.py)."""
        peers = frozenset(self.by_raw)
        icmp, tcp, udp = frozenset({P.IPPROTO_ICMP}), frozenset({P.IPPROTO_TCP}), frozenset({P.IPPROTO_UDP})
        ports = (self.sport_lo, self.sport_hi)

        def saw(reason: str, method: str, **details: object) -> Callable[[Reply], None]:
            def on(r: Reply) -> None:
                self._saw(self._addr(r.peer), reason, r.ts_ns, r.ip.ttl, method, **details)
            return on

        def timestamp(r: Reply) -> None:
            m = r.icmp
            assert m is not None
            self._saw(socket.inet_ntoa(r.peer), "timestamp-reply", r.ts_ns, r.ip.ttl, "timestamp",
                      timestamp={"recv": m.recv, "xmit": m.xmit})

        def mask(r: Reply) -> None:
            m = r.icmp
            assert m is not None
            self._saw(socket.inet_ntoa(r.peer), "mask-reply", r.ts_ns, r.ip.ttl, "mask", mask=socket.inet_ntoa(m.mask))

        def broadcast(r: Reply) -> None:
            src = self._addr(r.peer)
            self.sent_ns.setdefault((src, "broadcast"), self.bcast_sent_ns)
            self._saw(src, "broadcast-echo-reply" if r.family == 4 else D6.MULTICAST_REASON, r.ts_ns, r.ip.ttl,
                      "broadcast")

        def syn(r: Reply) -> None:
            t = r.tcp
            assert t is not None
            self._saw(self._addr(r.peer), "syn-ack" if t.flags & P.SYN else "syn-reset", r.ts_ns, r.ip.ttl, "syn")

        def udp_answer(r: Reply) -> None:
            reason = "udp-response" if r.error is None else "port-unreach" if r.port_unreach else "icmp-unreach"
            if r.error is None or r.dest_unreach:
                self._saw(self._addr(r.peer), reason, r.ts_ns, r.ip.ttl, "udp")

        seq_ok = seq_is_cookie(self.cookie, SALT["ack"])
        icmp6 = frozenset({D6.IPPROTO_ICMPV6})

        def bcast_ok(r: Reply) -> bool:
            m = r.icmp or r.icmp6
            return m is not None and (m.id, m.seq) in self.bcast_idents

        table: dict[str, list[tuple[Want, Callable[[Reply], None]]]] = {
            "echo": [(Want(peers, icmp, errors=False, icmp_types=frozenset({P.ICMP_ECHOREPLY}),
                           valid=ident_is_cookie(self.cookie, SALT["echo"])), saw("echo-reply", "echo")),
                     (Want(peers, icmp6, errors=False, icmp_types=frozenset({D6.ECHO_REPLY}),
                           valid=ident_is_cookie(self.cookie, SALT["echo"])), saw("echo-reply", "echo"))],
            "broadcast": [(Want(None, icmp, errors=False, icmp_types=frozenset({P.ICMP_ECHOREPLY}), valid=bcast_ok),
                           broadcast),
                          (Want(None, icmp6, errors=False, icmp_types=frozenset({D6.ECHO_REPLY}), valid=bcast_ok),
                           broadcast)],
            "timestamp": [(Want(peers, icmp, errors=False, icmp_types=frozenset({P.ICMP_TSTAMPREPLY}),
                                valid=ident_is_cookie(self.cookie, SALT["timestamp"])), timestamp)],
            "mask": [(Want(peers, icmp, errors=False, icmp_types=frozenset({P.ICMP_MASKREPLY}),
                           valid=ident_is_cookie(self.cookie, SALT["mask"])), mask)],
            "syn": [(Want(peers, tcp, ports, errors=False, valid=acks_cookie(self.cookie, SALT["syn"])), syn)],
            "ack": [(Want(peers, tcp, ports, errors=False,
                          valid=lambda r: r.tcp is not None and bool(r.tcp.flags & P.RST) and seq_ok(r)),
                     saw("ack-reset", "ack"))],
            "udp": [(Want(peers, udp, ports, valid=port_is_cookie(self.cookie, self.sport_lo, self.sport_hi, SALT["udp"])),
                     udp_answer)],
        }
        return [w for name in self._enabled for w in table.get(name, [])]

    def _udp_sport(self, addr: str, port: int) -> int:
        return cookie_port(self.cookie, self.sport_lo, self.sport_hi, addr_bytes(addr), port, SALT["udp"])

    # ------------------------------------------------------------------ send

    def _frames(self, link: Link, addr: str, mac: bytes, m: MethodSpec) -> list[bytes]:
        if ":" in addr:
            return D6.frames(self, link, addr, mac, m)
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
            return [P.build_frame(eth, P.IPv4(src, dst, P.IPPROTO_UDP, id=ipid), P.UDP(self._udp_sport(addr, m.port), m.port, b""))]
        return []

    def _broadcast_targets(self) -> dict[str, tuple[Link, str]]:
        """On-link networks that contain targets -> (link, broadcast address)."""
        out: dict[str, tuple[Link, str]] = {}
        tab = route.table()
        v4 = [ipaddress.IPv4Address(t) for t in self.targets if ":" not in t]
        for net, r in tab.routes:
            if r.get("gateway") or net.prefixlen == 0 or net.prefixlen >= 31:
                continue
            if any(t in net for t in v4):
                rr = route.Route(r["dev"], r.get("prefsrc") or tab.addrs.get(r["dev"], [""])[0], None)
                if rr.iface == "lo" or not rr.src:
                    continue
                out[str(net.broadcast_address)] = (self.links.for_route(rr), str(net.broadcast_address))
        return out

    async def run(self) -> dict[str, Seen]:
        self._enabled = {m.name for m in self.methods}
        plan: list[tuple[Link, str, route.Route]] = []
        for a in self.targets:
            r = route.lookup_any(a)
            plan.append((self.links.for_route(r), a, r))
        links = {id(link): link for link, _, _ in plan}
        wants = self._wants()
        tokens = [(link, link.subscribe(self._on_arp),
                   [link.listen(w, h) for w, h in wants] + [link.listen(*D6.na_want(self, link))])
                  for link in links.values()]
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
                    link.send(D6.ns_frame(link, a) if ":" in a else link.arp_request_frame(a))
                if pending:  # every request answered: no need to wait out the timeout (nmap's ARP ping)
                    def resolved(p: list[tuple[Link, str]] = pending) -> bool:
                        return all(lk.neigh.get(x) is not None for lk, x in p)

                    await until_quiet(list(links.values()), self._wait(), lambda: self.last_reply, quiet=0.05,
                                      done=resolved)
            for link, a in onlink:
                self.macs[a] = link.neigh.get(a)
                if arp_wanted and self.macs[a] is not None and a not in self.seen:
                    self._saw(a, "arp-response" if ":" not in a else D6.ND_REASON, 0, None, "arp")
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
                        frames = self._frames(link, a, mac, m)
                        if self.frag_size:
                            frames = [f for fr in frames for f in fragment_frame(fr, self.frag_size)]
                        for fr in frames:
                            await mp.budget(1)
                            self.sent_ns.setdefault((a, m.name), time.time_ns())
                            link.send(fr)
                            n += 1
                if "broadcast" in self._enabled and attempt == 0:
                    n += await self._send_broadcast(pacer)
                    n += await D6.send_all_nodes(self, plan, pacer)
                if n or attempt == 0:
                    await until_quiet(list(links.values()), self._wait(), lambda: self.last_reply, quiet=0.05)
        finally:
            for link, arp, listening in tokens:
                link.unsubscribe(arp)
                for token in listening:
                    link.unlisten(token)
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


class DiscoveryTechnique(Technique[Seen]):
    """Host discovery through the contract of probes/base.py. It runs first; the runner marks
    the targets it got no answer from as down (reason no-response)."""

    name = "discovery"
    phase = 0
    label = "discovery"

    def __init__(self, methods: list[MethodSpec], frag_size: int = 0):
        self.methods = methods
        self.frag_size = frag_size

    @classmethod
    def create(cls, options: ScanOptions) -> list[DiscoveryTechnique]:
        return [cls(options.ping, options.frag_size if options.fragment else 0)] if options.ping else []

    async def probe(self, hosts: Sequence[model.HostResult], session: Session) -> dict[str, Seen]:
        task = session.progress.phase(self.label, len(hosts))
        d = self._discovery = Discovery([h.address for h in hosts], self.methods, session.timing, links=session.links,
                                        frag_size=self.frag_size)
        up = 0

        def on_up(addr: str) -> None:  # hosts count as they answer; the silent ones at the end
            nonlocal up
            up += 1
            session.progress.advance(task, 1)
            session.progress.update_counts(hosts_up=up)

        d.on_up = on_up
        seen = await d.run()
        session.progress.advance(task, len(hosts) - up)
        return seen

    _discovery: Discovery | None = None  # the discovery in progress (partial() reads it)

    def partial(self) -> dict[str, Seen]:
        """The hosts that answered before the stop (the others are not down yet, only unheard)."""
        d = self._discovery
        return {} if d is None else dict(d.seen)

    def record(self, host: model.HostResult, result: Seen) -> None:
        host.status, host.reasons = "up", list(result.reasons)
        host.mac, host.rtt_us = result.mac, result.rtt_us
        if result.ttl is not None:
            host.distance = distance(result.ttl)
        if result.details:
            host.os.discovery.update({k: model.to_json(v) for k, v in result.details.items() if k != "mac"})
