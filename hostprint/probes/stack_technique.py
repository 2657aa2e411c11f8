"""-O as a technique (probes/base.py): the stack probe of each host's family — nmap's
second-generation set plus ours and the xprobe2-style ICMP view for IPv4 (probes/stack.py,
probes/icmp_stack.py), nmap's IPv6 set plus ours for IPv6 (probes/stack6.py) — side by side for
up to 64 hosts, matched against the DBs chosen with --os-db (IPv4) or the IPv6 class DB."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hostprint.model import CLOSED, OPEN, HostResult
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions
from hostprint.probes.stack import StackProbe
from hostprint.probes.stack_result import StackResult

OS_PARALLEL_HOSTS = 64


class StackTechnique(Technique[tuple[StackResult, object]]):
    """-O: nmap's second-generation probes plus ours and the ICMP view, side by side for up to
    64 hosts (each probe keeps its replies by address and cookie, so a /24 costs about what one
    host costs), matched against the DBs chosen with --os-db by match/stack_report.py. With
    --sequence, the SEQ probes' answers are also the host's sequence report."""

    name = "stack"
    phase = 50
    label = "OS detection"

    def __init__(self, options: ScanOptions):
        from hostprint.match.stack import load_matchers

        self.matchers = load_matchers(options.os_db)  # a bad or missing DB fails before any packet
        from hostprint.match.stack import load_matchers6

        self._matchers6 = load_matchers6()  # the IPv6 class DB (signatures/stack6/): also checked now
        self.p0f_db = None
        if "p0f" in [x.strip() for x in options.os_db.split(",")]:
            from hostprint.probes.stack_p0f import load_db

            self.p0f_db = load_db()
        self.sequence = options.sequence

    @classmethod
    def create(cls, options: ScanOptions) -> list[StackTechnique]:
        return [cls(options)] if options.os_detect else []

    async def probe(self, hosts: Sequence[HostResult], session: Session) -> dict[str, tuple[StackResult, object]]:
        from hostprint.probes.icmp_stack import IcmpStackProbe

        task = session.progress.phase(self.label, len(hosts))
        gate = asyncio.Semaphore(OS_PARALLEL_HOSTS)
        out: dict[str, tuple[StackResult, object]] = {}
        self._settled = out  # a stop keeps the hosts finished so far (base.Technique.partial)

        async def one(h: HostResult) -> None:
            open_tcp = [p.port for p in h.ports if p.protocol == "tcp" and p.state == OPEN]
            closed = session.closed_tcp.get(h.address) or next(
                (p.port for p in h.ports if p.protocol == "tcp" and p.state == CLOSED), None)
            closed_udp = next((p.port for p in h.ports if p.protocol == "udp" and p.state == CLOSED), 40125)
            rtt = (h.rtt_us or 0) / 1e6
            wait = min(max(8 * rtt, 0.25), 1.0) if rtt else 1.0  # until answers tell the RTT
            async with gate:
                if ":" in h.address:  # IPv6: nmap's IPv6 probe set and ours (probes/stack6.py); no xprobe2 view
                    from hostprint.probes.stack6 import probe6

                    res, icmp = await probe6(h.address, open_tcp[0] if open_tcp else None, closed, closed_udp,
                                             session.links, wait), None
                else:
                    res, icmp = await asyncio.gather(
                        StackProbe(h.address, open_tcp[0] if open_tcp else None, closed, closed_udp, session.links,
                                   wait=wait).run(),
                        IcmpStackProbe(h.address, session.links, closed_udp, wait=wait).run())
            res.ports = {"open": open_tcp[0] if open_tcp else None, "closed": closed, "closed_udp": closed_udp}
            out[h.address] = (res, icmp)
            session.progress.advance(task, 1)

        await asyncio.gather(*(one(h) for h in hosts))
        return out

    def record(self, host: HostResult, result: tuple[StackResult, object]) -> None:
        from hostprint.match.stack_report import stack_report

        res, icmp = result
        if ":" in host.address:
            block, found = stack_report(res, None, self._matchers6, None, res.ports, ipv6=True)
            host.os.add(block, architecture=found, fingerprint=block.fingerprint, conditions=block.conditions)
            if self.sequence and res.sequence:
                from hostprint.probes.sequence import sequence_report

                host.sequence = sequence_report(res.sequence)
            return
        p0f = None
        if self.p0f_db is not None and any(attrs.get("R", "Y") == "Y" for attrs in res.tests.values()):
            from hostprint.probes.stack_p0f import p0f_matches, raw_signatures

            p0f = (p0f_matches(res, self.p0f_db), raw_signatures(res))
        block, found = stack_report(res, icmp, self.matchers, p0f, res.ports)
        host.os.add(block, architecture=found, fingerprint=block.fingerprint, conditions=block.conditions)
        if self.sequence and res.sequence:
            from hostprint.probes.sequence import sequence_report

            host.sequence = sequence_report(res.sequence)
