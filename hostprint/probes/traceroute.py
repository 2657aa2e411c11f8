"""--traceroute (and -A): the routers between us and each up host, as nmap's traceroute does.

One probe per TTL from 1 up to the host's distance (+ 2, at most 30), all at once: a TCP SYN to an
open port when the scan found one (it passes firewalls that drop everything else), else a UDP
datagram to a closed UDP port, else an ICMP echo. Routers answer with ICMP time exceeded (RFC 792)
quoting the probe; the host answers the probe itself. The TTL rides in the probe's source port (and
ICMP sequence), so every answer says which hop it is; the TCP sequence number / ICMP id is the
usual keyed cookie. A hop that stays silent is listed without an address, as nmap's "...".
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.icmpv6 import echo_request
from hostprint.engine.ipv6 import IPPROTO_ICMPV6
from hostprint.engine.replies import Reply, Want, addr_bytes, addr_key
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions

MAX_TTL = 30
SALT = 31


class _Plan:
    def __init__(self, addr: str, kind: str, port: int, max_ttl: int):
        self.addr, self.kind, self.port, self.max_ttl = addr, kind, port, max_ttl
        self.sent: dict[int, int] = {}  # ttl -> send time (ns)
        self.hops: dict[int, tuple[str, int]] = {}  # ttl -> (address, rtt ns)
        self.reached: int | None = None  # smallest TTL the host itself answered


class Traceroute:
    def __init__(self, session: Session, ttl_port_base: int):
        self.session = session
        self.cookie = Cookie()
        self.base = ttl_port_base  # source port = base + ttl
        self.plans: dict[bytes, _Plan] = {}

    def _seq(self, addr: bytes, port: int, ttl: int) -> int:
        return self.cookie(addr_key(self.cookie, addr), port, self.base + ttl, SALT)

    def _on_reply(self, r: Reply) -> None:
        plan = self.plans.get(r.peer)
        if plan is None:
            return
        now = r.ts_ns
        if r.error is not None:  # quoted probe: TTL from our port, cookie from the quoted header
            if r.proto in (P.IPPROTO_ICMP, IPPROTO_ICMPV6):
                q = r.quoted_icmp
                if q is None or r.quoted is None or len(r.quoted[1]) < 8:
                    return
                ttl = struct.unpack_from("!H", r.quoted[1], 6)[0]
                if q[1] != self._seq(r.peer, 0, 0) & 0xFFFF:
                    return
            else:
                if r.our_port is None:
                    return
                ttl = r.our_port - self.base
                if plan.kind == "tcp" and r.quoted is not None and len(r.quoted[1]) >= 8:
                    if struct.unpack_from("!I", r.quoted[1], 4)[0] != self._seq(r.peer, plan.port, ttl):
                        return
            if not 1 <= ttl <= plan.max_ttl or ttl not in plan.sent:
                return
            hop = socket.inet_ntop(socket.AF_INET6 if r.family == 6 else socket.AF_INET, r.ip.src)
            if r.time_exceeded:  # a router
                plan.hops.setdefault(ttl, (hop, now - plan.sent[ttl]))
            elif r.dest_unreach and r.ip.src == r.peer:  # the host itself (UDP: port unreachable)
                plan.hops.setdefault(ttl, (hop, now - plan.sent[ttl]))
                plan.reached = ttl if plan.reached is None else min(plan.reached, ttl)
            return
        if r.proto == P.IPPROTO_TCP and r.tcp is not None and r.our_port is not None:
            ttl = r.our_port - self.base
            if ttl not in plan.sent or r.tcp.ack != (self._seq(r.peer, plan.port, ttl) + 1) & 0xFFFFFFFF:
                return
        elif r.proto == P.IPPROTO_UDP and r.our_port is not None:
            ttl = r.our_port - self.base
        elif (m := r.icmp or r.icmp6) is not None and m.type in (P.ICMP_ECHOREPLY, 129):
            if m.id != self._seq(r.peer, 0, 0) & 0xFFFF:
                return
            ttl = m.seq
        else:
            return
        if ttl in plan.sent:
            plan.hops.setdefault(ttl, (plan.addr, now - plan.sent[ttl]))
            plan.reached = ttl if plan.reached is None else min(plan.reached, ttl)

    def _frame(self, link: Any, mac: bytes, plan: _Plan, ttl: int) -> bytes:
        dst = addr_bytes(plan.addr)
        v6 = len(dst) == 16
        sport = self.base + ttl
        if plan.kind == "tcp":
            l4: Any = P.TCP(sport, plan.port, self._seq(dst, plan.port, ttl), 0, P.SYN, 1024,
                            options=[(P.OPT_MSS, 1460)])
            proto = P.IPPROTO_TCP
        elif plan.kind == "udp":
            l4, proto = P.UDP(sport, plan.port, b""), P.IPPROTO_UDP
        elif v6:
            l4, proto = echo_request(self._seq(dst, 0, 0) & 0xFFFF, ttl), IPPROTO_ICMPV6
        else:
            l4, proto = P.ICMP(P.ICMP_ECHO, 0, self._seq(dst, 0, 0) & 0xFFFF, ttl), P.IPPROTO_ICMP
        return link.frame(plan.addr, mac, l4, proto, ttl=ttl, ipid=(sport * 7) & 0xFFFF)

    async def run(self, plans: list[_Plan], wait: float) -> None:
        links: dict[int, Any] = {}
        sends: list[tuple[Any, bytes, _Plan, int]] = []
        for plan in plans:
            link, mac = await self.session.links.toward(plan.addr)
            if mac is None:
                continue
            self.plans[addr_bytes(plan.addr)] = plan
            links[id(link)] = link
            for ttl in range(1, plan.max_ttl + 1):
                sends.append((link, mac, plan, ttl))
        if not sends:
            return
        want = Want(peers=frozenset(self.plans),
                    protos=frozenset({P.IPPROTO_TCP, P.IPPROTO_UDP, P.IPPROTO_ICMP, IPPROTO_ICMPV6}),
                    our_ports=(self.base + 1, self.base + MAX_TTL), icmp_types=frozenset({P.ICMP_ECHOREPLY, 129}))
        tokens = [(link, link.listen(want, self._on_reply)) for link in links.values()]
        try:
            for link, mac, plan, ttl in sends:
                plan.sent[ttl] = time.time_ns()
                link.send(self._frame(link, mac, plan, ttl))
            end = time.monotonic() + wait
            while time.monotonic() < end:
                for link in links.values():
                    link.poll()
                if all(p.reached is not None and all(t in p.hops for t in range(1, p.reached + 1))
                       for p in self.plans.values()):
                    break
                await asyncio.sleep(0.005)
        finally:
            for link, tok in tokens:
                link.unlisten(tok)


def _plan_for(h: model.HostResult) -> _Plan:
    tcp_open = [p.port for p in h.ports if p.protocol == "tcp" and p.state == model.OPEN]
    udp_closed = [p.port for p in h.ports if p.protocol == "udp" and p.state == model.CLOSED]
    top = min(MAX_TTL, (h.distance or MAX_TTL - 2) + 2)
    if tcp_open:
        return _Plan(h.address, "tcp", tcp_open[0], top)
    if udp_closed:
        return _Plan(h.address, "udp", udp_closed[0], top)
    return _Plan(h.address, "icmp", 0, top)


class TracerouteTechnique(Technique[list[dict[str, Any]]]):
    """--traceroute through the contract of probes/base.py: hops into host.trace."""

    name = "traceroute"
    phase = 70
    label = "traceroute"

    @classmethod
    def create(cls, options: ScanOptions) -> list[TracerouteTechnique]:
        return [cls()] if options.traceroute else []

    async def probe(self, hosts: Sequence[model.HostResult], session: Session) -> dict[str, list[dict[str, Any]]]:
        task = session.progress.phase(self.label, len(hosts))
        lo, _hi = route.probe_port_range()
        tr = Traceroute(session, lo + 1024)  # above the port scans' cookie ports' busiest part
        plans = self._plans = [_plan_for(h) for h in hosts]
        await tr.run(plans, wait=max(session.timing.initial_rtt, 0.5))
        session.progress.finish(task)
        return _hops(plans)

    _plans: list[_Plan] | None = None  # the run in progress: a stop keeps the hops heard so far

    def partial(self) -> dict[str, list[dict[str, Any]]]:
        return _hops(self._plans or [])

    def record(self, host: model.HostResult, result: list[dict[str, Any]]) -> None:
        host.trace = result


def _hops(plans: Sequence[_Plan]) -> dict[str, list[dict[str, Any]]]:
    """host.trace per address: one record per TTL up to the target (or the last hop heard)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for plan in plans:
        if plan.reached is None and not plan.hops:
            continue
        last = plan.reached or max(plan.hops)
        probe = f"port {plan.port}/{plan.kind}" if plan.kind != "icmp" else "ICMP echo"
        hops = []
        for ttl in range(1, last + 1):
            hop = plan.hops.get(ttl)
            rec: dict[str, Any] = {"ttl": ttl, "address": hop[0] if hop else None,
                                   "rtt_us": round(hop[1] / 1000, 1) if hop else None}
            if ttl == 1:
                rec["probe"] = probe
                if plan.kind != "icmp":
                    rec["port"], rec["proto"] = plan.port, plan.kind
            hops.append(rec)
        out[plan.addr] = hops
    return out
