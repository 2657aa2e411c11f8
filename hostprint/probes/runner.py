"""One run of registered techniques over a set of targets: discovery, port scans, then the
fingerprinting techniques on the hosts that are up, then the combined verdict per host.

The runner is the only place that knows the phases' order of business: hosts discovery did not
hear from are down; once the port scans are done each host's ports are folded and named; every
later technique sees only up hosts. Everything else is the techniques' own (probes/base.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hostprint import model
from hostprint.match import architecture, verdict
from hostprint.probes.base import Session, Technique
from hostprint.stackfacts import distance

#: phases below this are port scans: their results are folded and named before later phases
SERVICES_PHASE = 20
#: up hosts go through the phases after discovery in groups of this many (nmap's host groups), so
#: the first hosts of a big scan are reported while the others are still being probed
GROUP_SIZE = 256


@dataclass
class RunState:
    """What a run has so far, readable when it stops early (Ctrl-C): every host with what the
    finished techniques recorded, the technique running (with the hosts it measures and those
    whose result it already recorded), and which hosts are finished."""

    hosts: dict[str, model.HostResult] = field(default_factory=dict)
    phase: str | None = None
    finished_phases: int = 0
    ports_done: set[str] = field(default_factory=set)  # addresses whose ports were folded and named
    done: set[str] = field(default_factory=set)  # addresses handed to host_done
    running: Technique[Any] | None = None
    running_hosts: list[model.HostResult] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)  # addresses the running technique recorded
    #: what a stopped technique's partial results put into hosts, by address (record_partial)
    partial: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        """Something was measured: a technique finished, or a stopped one left partial results."""
        return self.finished_phases > 0 or bool(self.partial)


def record_partial(state: RunState) -> dict[str, Any]:
    """Record the partial results of the technique a stop cut short (probes/base.py, rule 4) into
    the hosts it was measuring, each with a warning saying so. Discovery's targets it had not heard
    from yet are neither up nor down: status unknown. Returns the results recorded, by address; a
    technique failing here costs its partial results, never the rest of the run's."""
    tech, hosts = state.running, state.running_hosts
    state.running, state.running_hosts = None, []
    kept: dict[str, Any] = {}
    if tech is None:
        return kept
    label = tech.label or tech.name
    try:
        got = tech.partial()
    except Exception:  # noqa: BLE001 - a stop must still write what the finished techniques found
        got = {}
    for h in hosts:
        if h.address in state.recorded or h.address in state.done:
            continue
        r = got.get(h.address)
        if r is not None:
            try:
                tech.record(h, r)
                kept[h.address] = r
            except Exception:  # noqa: BLE001
                r = None
        if tech.phase == 0 and r is None and h.status == "up":
            h.status, h.reasons = "unknown", ["interrupted"]
        h.warnings.append(f"the run was interrupted during {label}: "
                          + ("what it had found by then is kept, the rest is unknown" if r is not None else
                             "nothing of it was kept"))
    state.recorded.clear()
    state.partial.update(kept)
    return kept


def partial_hosts(state: RunState, session: Session, *, only_open: bool = False) -> list[model.HostResult]:
    """The hosts of a run that stopped early, as far as they got: the partial results of the
    technique that was running (`record_partial`), ports folded and named as at the end of the port
    scans, and the combined verdict over the evidence the techniques left. Hosts are not marked
    done."""
    record_partial(state)
    hosts = list(state.hosts.values())
    pending = [h for h in hosts if h.address not in state.ports_done]
    _finish_ports(pending, only_open, session)
    state.ports_done.update(h.address for h in pending)
    for h in hosts:
        if h.status == "up" and h.address not in state.done:
            verdict.apply(h.os)
    return hosts


class Names(Protocol):
    """Reverse DNS beside the probes (hostprint/names.py): started with the addresses to look up,
    awaited before hosts are reported."""

    def start(self, addresses: list[str]) -> None: ...

    async def finish(self, addresses: list[str]) -> dict[str, str]: ...


async def run(techniques: Sequence[Technique[Any]], targets: list[str], session: Session, *,
              only_open: bool = False, host_done: Callable[[model.HostResult], None] | None = None,
              names: Names | None = None, resolve_all: bool = False, group_size: int = GROUP_SIZE,
              user_names: dict[str, str] | None = None, state: RunState | None = None) -> list[model.HostResult]:
    """HostResults in target order. `host_done` is called for each host as soon as it is
    finished (down hosts after discovery, up hosts after the last technique of their group).
    `names` looks up PTR names of the up hosts (all targets with `resolve_all`, nmap's -R) while
    the probes run; `user_names` are the names the user typed (address -> name). `state`, when
    given, follows the run (for outputs written at an interruption)."""
    state = state if state is not None else RunState()
    hosts = {a: model.HostResult(a, "up", ["user-set"]) for a in targets}
    state.hosts.update(hosts)  # a sharded scan runs several groups of hosts through one state

    def finished(h: model.HostResult) -> None:
        state.done.add(h.address)
        if host_done is not None:
            host_done(h)

    for a, n in (user_names or {}).items():
        if a in hosts:
            hosts[a].add_hostname(n, "user")
    order = sorted(techniques, key=lambda t: t.phase)
    discovery = [t for t in order if t.phase == 0]
    later = [t for t in order if t.phase > 0]
    if names is not None and resolve_all:
        names.start(list(targets))
    def down(h: model.HostResult) -> None:
        h.status, h.reasons = "down", ["no-response"]
        finished(h)

    for tech in discovery:  # discovery: no answer, no host
        up = [h for h in hosts.values() if h.status == "up"]
        if not up:
            break
        await run_phase(tech, up, session, state, silent=down)
        session.progress.update_counts(hosts_up=sum(h.status == "up" for h in hosts.values()))
    up = [h for h in hosts.values() if h.status == "up"]
    fingerprinted = 0
    if names is not None and not resolve_all:
        names.start([h.address for h in up])
    for i in range(0, len(up), max(group_size, 1)):
        group = up[i:i + max(group_size, 1)]
        await _run_group(later, group, session, only_open, state)
        if names is not None:
            await _add_ptr_names(names, group)
        state.phase = "verdict"
        for h in group:
            verdict.apply(h.os)  # one verdict from every technique's evidence
            fingerprinted += bool(h.os.matches or h.os.unknown)
            finished(h)
        session.progress.update_counts(fingerprints=fingerprinted)
    if names is not None and resolve_all:
        await _add_ptr_names(names, [h for h in hosts.values() if h.status != "up"])
    return [hosts[a] for a in targets]


async def _add_ptr_names(names: Names, hosts: list[model.HostResult]) -> None:
    """The PTR names of `hosts` (looked up since `names.start`), added to each host that has one."""
    found = await names.finish([h.address for h in hosts])
    for h in hosts:
        if h.address in found:
            h.add_hostname(found[h.address], "PTR")


async def run_phase(tech: Technique[Any], hosts: list[model.HostResult], session: Session, state: RunState,
                    silent: Callable[[model.HostResult], None] | None = None) -> Mapping[str, Any]:
    """One technique over `hosts`, each result recorded in its host; `silent` is called, in host
    order, for each host the technique has no result for. Returns the results. `state` follows it:
    a stop inside leaves what `record_partial` needs (a command that runs one technique over hosts
    it prepared, as amap does, calls this instead of `run`)."""
    for h in hosts:
        state.hosts.setdefault(h.address, h)
    state.phase = tech.label or tech.name
    state.running, state.running_hosts = tech, list(hosts)
    state.recorded.clear()
    results = await tech.probe(hosts, session)
    for h in hosts:
        r = results.get(h.address)
        if r is not None:
            tech.record(h, r)
        elif silent is not None:
            silent(h)
        state.recorded.add(h.address)
    state.running, state.running_hosts = None, []
    state.recorded.clear()
    state.finished_phases += 1
    return results


async def _run_group(techniques: Sequence[Technique[Any]], group: list[model.HostResult], session: Session,
                     only_open: bool, state: RunState) -> None:
    """The phases after discovery over one group of up hosts."""
    ports_finished = False
    for tech in techniques:
        if tech.phase >= SERVICES_PHASE and not ports_finished:
            _finish_ports(group, only_open, session)
            state.ports_done.update(h.address for h in group)
            ports_finished = True
        active = [h for h in group if h.status == "up"]
        if not active:
            break
        deadline = session.deadline
        if deadline is not None and time.monotonic() >= deadline:  # --host-timeout: what is known is kept
            for h in active:
                h.warnings.append(f"--host-timeout {session.host_timeout:g}s reached before {tech.label or tech.name}; "
                                  "that and later phases were skipped")
            break
        await run_phase(tech, active, session, state)
    if not ports_finished:
        _finish_ports(group, only_open, session)
        state.ports_done.update(h.address for h in group)


def _finish_ports(hosts: Any, only_open: bool, session: Session) -> None:
    """Name the interesting ports from the port table, fold big states into extraports (nmap's
    rule), infer the distance from reply TTLs and look for forwarding in per-port TTLs."""
    from hostprint.services import service_name

    for h in hosts:
        if h.status != "up":
            continue
        for r in h.ports:
            if r.service is None:  # every listed port gets its port-table name, as nmap does
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
        h.os.architecture.extend(architecture.from_port_ttls(h))
