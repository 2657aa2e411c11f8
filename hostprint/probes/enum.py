"""Enumeration after -sV (the survey's third phase): ask the SNMP, SMB, NTP and LDAP services a
host runs what they tell anyone about the host (probes/enum_clients.py), and turn the answers into
typed OS evidence (model.EnumBlock, matched by match/enum.py against signatures/enum_os.txt) that
the combined verdict weighs like a banner.

Which ports: every listed port whose state is open (or open|filtered for UDP, where SNMP with a
wrong community and NTP are silent to a scan) and whose service is one of these — by -sV's name,
else the port table's. SNMP tries each --snmp-community (default public).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from hostprint import model
from hostprint.match import enum as enum_match
from hostprint.model import Json
from hostprint.probes import enum_clients as C
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions

#: (kind, protocol, service names, standard ports)
KINDS = (("snmp", "udp", {"snmp"}, {161}),
         ("ntp", "udp", {"ntp"}, {123}),
         ("smb", "tcp", {"microsoft-ds", "smb", "netbios-ssn"}, {445}),
         ("ldap", "tcp", {"ldap"}, {389}))


def _targets(host: model.HostResult) -> list[tuple[str, int, str]]:
    out = []
    for p in host.ports:
        ok_states = (model.OPEN, model.OPEN_FILTERED) if p.protocol == "udp" else (model.OPEN,)
        if p.state not in ok_states:
            continue
        name = (p.service.name or "") if p.service else ""
        for kind, proto, names, ports in KINDS:
            if p.protocol == proto and (name in names or (p.port in ports and not (p.service and p.service.product
                                                                                    and name not in names))):
                out.append((kind, p.port, proto))
                break
    return out


def _jsonable(v: Any) -> Json:
    return model.to_json(v)


class EnumTechnique(Technique[dict[str, dict[str, Json]]]):
    name = "enum"
    label = "Enumeration"
    phase = 22  # after -sV (20): its names choose the ports
    needs_raw = False

    def __init__(self, options: ScanOptions):
        self.options = options

    @classmethod
    def create(cls, options: ScanOptions) -> Sequence[Technique[Any]]:
        return [cls(options)] if options.enumerate else []

    async def probe(self, hosts: Sequence[model.HostResult], session: Session) -> Mapping[str, dict[str, dict[str, Json]]]:
        jobs = [(h.address, kind, port, proto) for h in hosts for kind, port, proto in _targets(h)]
        task = session.progress.phase(self.label, len(jobs))
        sem = asyncio.Semaphore(32)
        out: dict[str, dict[str, dict[str, Json]]] = {}
        self._settled = out  # a stop keeps the services answered so far (base.Technique.partial)
        # one read waits as -sV's does (at most 3 s of the port's budget): a LAN agent answers in ms
        timeout = min(max(self.options.sv_timeout / 2, 1.0), 3.0)

        async def one(addr: str, kind: str, port: int, proto: str) -> None:
            calls: dict[str, Callable[[], Awaitable[dict[str, Any] | None]]] = {
                "snmp": lambda: C.snmp_info(addr, port, self.options.snmp_communities, timeout),
                "ntp": lambda: C.ntp_variables(addr, port, timeout),
                "smb": lambda: C.smb_info(addr, port, timeout * 2),
                "ldap": lambda: C.ldap_root_dse(addr, port, timeout * 2)}
            async with sem:
                try:
                    facts = await calls[kind]()
                except Exception:  # noqa: BLE001 - one misbehaving server must not end the run
                    facts = None
            session.progress.advance(task, 1)
            if facts:
                out.setdefault(addr, {})[f"{port}/{proto} {kind}"] = {"kind": kind, **{
                    k: _jsonable(v) for k, v in facts.items()}}

        await asyncio.gather(*(one(*j) for j in jobs))
        session.progress.finish(task)
        session.stats[self.name] = {"services": len(jobs), "answered": sum(len(v) for v in out.values())}
        return out

    def record(self, host: model.HostResult, result: dict[str, dict[str, Json]]) -> None:
        block = model.EnumBlock("enum", matches=enum_match.match(result), services=dict(result))
        host.os.add(block)
