"""UDP port scan (-sU): nmap's states from the answers.

UDP reply -> open (udp-response); ICMP port unreachable -> closed (port-unreach); other ICMP
unreachables -> filtered; silence after the retransmissions -> open|filtered. The probe's source
port is a cookie of (target, port), checked in the reply or in the ICMP error's quoted header.
Targets rate-limit ICMP errors (Linux: net.ipv4.icmp_ratelimit, icmp_msgs_per_sec), so rounds
continue while they still bring answers, like the TCP scan's loss handling.
"""

from __future__ import annotations

import socket
import time

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Link, Links, until_quiet
from hostprint.engine.rate import Pacer, Timing
from hostprint.engine.replies import Reply, Want, cookie_port, port_is_cookie
from hostprint.model import Json
from hostprint.probes.base import PortListScan, Session
from hostprint.signatures.udp_payloads import payload_for

FILTER_CODES = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 9: "net-prohibited",
                10: "host-prohibited", 13: "admin-prohibited"}
SALT = 17  # separates the UDP scan's source-port cookies from other probes'


class UdpScan:
    def __init__(self, targets: list[str], ports: list[int], timing: Timing, *, links: Links | None = None,
                 data_length: int | None = None):
        self.targets = targets
        self.ports = sorted(set(ports))
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.data_length = data_length
        self.cookie = Cookie()
        self.sport_lo, self.sport_hi = route.probe_port_range()
        self.result: dict[tuple[str, int], tuple[str, str, int]] = {}
        self.last_reply = 0.0
        self.probes = 0

    def sport(self, addr: str, port: int) -> int:
        return cookie_port(self.cookie, self.sport_lo, self.sport_hi, socket.inet_aton(addr), port, SALT)

    def want(self) -> Want:
        return Want(peers=frozenset(socket.inet_aton(a) for a in self.targets), protos=frozenset({P.IPPROTO_UDP}),
                    our_ports=(self.sport_lo, self.sport_hi),
                    valid=port_is_cookie(self.cookie, self.sport_lo, self.sport_hi, SALT))

    def _on_reply(self, r: Reply) -> None:
        key = (socket.inet_ntoa(r.peer), r.their_port or 0)
        if r.error is None:
            self.result[key] = (model.OPEN, "udp-response", r.ip.ttl)
        elif r.error.type == P.ICMP_UNREACH:
            if r.error.code == 3:
                st = (model.CLOSED, "port-unreach", r.ip.ttl)
            else:
                st = (model.FILTERED, FILTER_CODES.get(r.error.code, "unreach"), r.ip.ttl)
            if key not in self.result or self.result[key][0] != model.OPEN:
                self.result[key] = st
        else:
            return
        self.last_reply = time.monotonic()

    async def run(self) -> dict[tuple[str, int], tuple[str, str, int]]:
        tab = route.table()
        plan: list[tuple[Link, str, bytes]] = []
        for a in self.targets:
            r = tab.lookup(a)
            link = self.links.for_route(r)
            mac = await link.resolve(r.gateway or a)
            if mac is not None:
                plan.append((link, a, mac))
        links = {id(x[0]): x[0] for x in plan}
        want = self.want()
        tokens = [link.listen(want, self._on_reply) for link in links.values()]
        pacer = Pacer(min(self.timing.rate, 50_000), burst=256)
        try:
            for rnd in range(self.timing.max_retries + 1):
                before = len(self.result)
                pending = 0
                for port in self.ports:
                    for link, a, mac in plan:
                        if (a, port) in self.result:
                            continue
                        payload = payload_for(port) if self.data_length is None else bytes(self.data_length)
                        fr = P.build_frame(link.eth(mac), P.IPv4(socket.inet_aton(link.src), socket.inet_aton(a), P.IPPROTO_UDP,
                                                                 id=self.sport(a, port) ^ port),
                                           P.UDP(self.sport(a, port), port, payload))
                        await pacer.budget(1)
                        link.send(fr)
                        pending += 1
                        self.probes += 1
                if pending == 0:
                    break
                await until_quiet(list(links.values()), max(self.timing.min_rtt * 2, 0.2), lambda: self.last_reply)
                if rnd >= 1 and len(self.result) == before:
                    break
        finally:
            for link, token in zip(links.values(), tokens):
                link.unlisten(token)
            if self.own_links:
                self.links.close()
        return self.result

    def results(self, addr: str) -> list[model.PortResult]:
        out = []
        for port in self.ports:
            st = self.result.get((addr, port))
            if st is None:
                out.append(model.PortResult(port, "udp", model.OPEN_FILTERED, "no-response"))
            else:
                out.append(model.PortResult(port, "udp", st[0], st[1], st[2]))
        return out


class UdpPortScan(PortListScan):
    """-sU through the contract of probes/base.py."""

    name = "udp"
    label = "UDP scan"
    protocol, kind = "udp", "udp"

    async def scan(self, addrs: list[str], session: Session) -> tuple[dict[str, list[model.PortResult]], dict[str, Json]]:
        us = UdpScan(addrs, self.ports, session.timing, links=session.links, data_length=self.options.data_length or None)
        await us.run()
        return {a: us.results(a) for a in addrs}, {"probes": us.probes}
