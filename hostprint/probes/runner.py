"""One run of registered techniques over a set of targets: discovery, port scans, then the
fingerprinting techniques on the hosts that are up, then the combined verdict per host.

The runner is the only place that knows the phases' order of business: hosts discovery did not
hear from are down; once the port scans are done each host's ports are folded and named; every
later technique sees only up hosts. Everything else is the techniques' own (probes/base.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hostprint import model
from hostprint.match import architecture, verdict
from hostprint.probes.base import Session, Technique
from hostprint.stackfacts import distance

#: phases below this are port scans: their results are folded and named before later phases
SERVICES_PHASE = 20


@dataclass
class RunState:
    """What a run has so far, readable when it stops early (Ctrl-C): every host with what the
    finished techniques recorded, the technique running, and how many have finished."""

    hosts: dict[str, model.HostResult] = field(default_factory=dict)
    phase: str | None = None
    finished_phases: int = 0
    ports_finished: bool = False
    done: set[str] = field(default_factory=set)  # addresses handed to host_done


def partial_hosts(state: RunState, session: Session, *, only_open: bool = False) -> list[model.HostResult]:
    """The hosts of a run that stopped early, as far as they got: ports folded and named as at the
    end of the port scans, and the combined verdict over the evidence the finished techniques left.
    Hosts are not marked done."""
    hosts = list(state.hosts.values())
    if not state.ports_finished:
        _finish_ports(hosts, only_open, session)
        state.ports_finished = True
    for h in hosts:
        if h.status == "up" and h.address not in state.done:
            verdict.apply(h.os)
    return hosts


async def run(techniques: Sequence[Technique[Any]], targets: list[str], session: Session, *,
              only_open: bool = False, host_done: Callable[[model.HostResult], None] | None = None,
              state: RunState | None = None) -> list[model.HostResult]:
    """HostResults in target order. `host_done` is called for each host as soon as it is
    finished (down hosts after discovery, up hosts after the last technique). `state`, when
    given, follows the run (for outputs written at an interruption)."""
    hosts = {a: model.HostResult(a, "up", ["user-set"]) for a in targets}
    if state is not None:
        state.hosts = hosts
    ports_finished = False
    for tech in sorted(techniques, key=lambda t: t.phase):
        if state is not None:
            state.phase = tech.label or tech.name
        if tech.phase >= SERVICES_PHASE and not ports_finished:
            _finish_ports(hosts.values(), only_open, session)
            ports_finished = True
            if state is not None:
                state.ports_finished = True
        up = [h for h in hosts.values() if h.status == "up"]
        if not up:
            break
        results = await tech.probe(up, session)
        for h in up:
            r = results.get(h.address)
            if r is not None:
                tech.record(h, r)
        if state is not None:
            state.finished_phases += 1
        if tech.phase == 0:  # discovery: no answer, no host
            for h in up:
                if h.address not in results:
                    h.status, h.reasons = "down", ["no-response"]
                    if state is not None:
                        state.done.add(h.address)
                    if host_done is not None:
                        host_done(h)
            session.progress.update_counts(hosts_up=sum(h.status == "up" for h in hosts.values()))
    if not ports_finished:
        _finish_ports(hosts.values(), only_open, session)
    if state is not None:
        state.ports_finished = True
        state.phase = "verdict"
    for h in hosts.values():
        if h.status == "up":
            verdict.apply(h.os)  # one verdict from every technique's evidence
            if state is not None:
                state.done.add(h.address)
            if host_done is not None:
                host_done(h)
    return [hosts[a] for a in targets]


def _finish_ports(hosts: Any, only_open: bool, session: Session) -> None:
    """Name the interesting ports from the port table, fold big states into extraports (nmap's
    rule), infer the distance from reply TTLs and look for forwarding in per-port TTLs."""
    from hostprint.services import service_name

    open_total = 0
    for h in hosts:
        if h.status != "up":
            continue
        for r in h.ports:
            if r.state in (model.OPEN, model.OPEN_FILTERED, model.FILTERED) and r.service is None:
                name = service_name(r.port, r.protocol)
                if name:
                    r.service = model.Service(name=name, method="port-table", confidence=0.3)
        rs = [r for r in h.ports if r.state == model.OPEN] if only_open else list(h.ports)
        folded = list(h.extraports)
        h.set_ports(rs)
        h.extraports = sorted(h.extraports + folded, key=lambda e: -e.count)
        ttls = [r.reason_ttl for r in rs if r.reason_ttl]
        if h.distance is None and ttls:
            h.distance = distance(min(ttls))
        open_total += sum(1 for r in rs if r.state == model.OPEN)
        h.os.architecture.extend(architecture.from_port_ttls(h))
    session.progress.update_counts(ports_open=open_total)
