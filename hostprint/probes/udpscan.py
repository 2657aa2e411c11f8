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
from hostprint.probes.udppayloads import payload_for

FILTER_CODES = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 9: "net-prohibited",
                10: "host-prohibited", 13: "admin-prohibited"}


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
        self.target_set = set(targets)
        self.probes = 0

    def sport(self, addr: str, port: int) -> int:
        span = self.sport_hi - self.sport_lo + 1
        return self.sport_lo + self.cookie(P.ip_to_int(addr), port, 0, 17) % span

    def _on_frame(self, ts: int, fr: memoryview) -> None:
        try:
            p = P.decode_frame(fr)
        except P.DecodeError:
            return
        if p.ip is None:
            return
        if isinstance(p.l4, P.UDP):
            src = socket.inet_ntoa(p.ip.src)
            if src in self.target_set and p.l4.dport == self.sport(src, p.l4.sport):
                self.result[(src, p.l4.sport)] = (model.OPEN, "udp-response", p.ip.ttl)
                self.last_reply = time.monotonic()
        elif isinstance(p.l4, P.ICMP) and p.l4.type == P.ICMP_UNREACH:
            q = p.l4.quoted_packet()
            if q is None:
                return
            qip, rest = q
            dst = socket.inet_ntoa(qip.dst)
            if qip.proto != P.IPPROTO_UDP or len(rest) < 4 or dst not in self.target_set:
                return
            sport, dport = int.from_bytes(rest[0:2], "big"), int.from_bytes(rest[2:4], "big")
            if sport != self.sport(dst, dport):
                return
            if p.l4.code == 3:
                st = (model.CLOSED, "port-unreach", p.ip.ttl)
            else:
                st = (model.FILTERED, FILTER_CODES.get(p.l4.code, "unreach"), p.ip.ttl)
            if (dst, dport) not in self.result or self.result[(dst, dport)][0] != model.OPEN:
                self.result[(dst, dport)] = st
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
        for link in links.values():
            link.subscribe(self._on_frame)
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
            for link in links.values():
                link.unsubscribe(self._on_frame)
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
