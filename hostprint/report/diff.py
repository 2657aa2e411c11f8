"""What changed between two recorded runs: hosts, port states, services and OS verdicts.

Why the rules below: a diff that cries wolf is ignored, so a port only counts as changed when both
runs actually looked at it (a port the older run never scanned did not "open"), ports are only
compared on hosts that were up in both runs (a host that went away is one change, not one per
port), and an unlisted port takes the state its run folded it into (nmap's <extraports>) when that
is unambiguous. Everything here is plain data so the terminal, JSON and HTML views say the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hostprint.model import OPEN, CertFacts, HostResult, ScanRun, Service
from hostprint.report import nmapstyle as ns

NOT_LISTED = "not listed"  # scanned, not among the listed ports, and no single extraports state


@dataclass
class HostChange:
    """A host that is up in one run and absent (or down) in the other."""

    address: str
    status_other: str  # its status in the run where it is not up: "absent" | "down" | ...
    open_ports: list[str] = field(default_factory=list)  # "22/tcp ssh", in the run where it is up
    os: str | None = None


@dataclass
class PortChange:
    address: str
    protocol: str
    port: int
    before: str
    after: str
    kind: str  # "opened" | "closed" | "changed"


@dataclass
class ServiceChange:
    address: str
    protocol: str
    port: int
    before: str
    after: str


@dataclass
class FingerprintChange:
    """A TLS or SSH fingerprint of a port open in both runs that differs: a new certificate, JARM,
    JA3S, HASSH or host key is a change even when product and version stay the same."""

    address: str
    protocol: str
    port: int
    what: str  # "certificate" | "JARM" | "JA3S" | "TLS version" | "HASSH" | "host key ssh-ed25519" …
    before: str
    after: str


@dataclass
class OsChange:
    address: str
    before: str | None
    after: str | None
    before_confidence: float | None = None
    after_confidence: float | None = None


@dataclass
class RunDiff:
    a: dict[str, Any]  # {"id", "started", "args"} of the older / reference run
    b: dict[str, Any]
    appeared: list[HostChange] = field(default_factory=list)
    went_away: list[HostChange] = field(default_factory=list)
    ports: list[PortChange] = field(default_factory=list)
    services: list[ServiceChange] = field(default_factory=list)
    os: list[OsChange] = field(default_factory=list)
    fingerprints: list[FingerprintChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.appeared or self.went_away or self.ports or self.services or self.os or self.fingerprints)

    def counts(self) -> dict[str, int]:
        return {
            "hosts_appeared": len(self.appeared),
            "hosts_went_away": len(self.went_away),
            "ports_opened": sum(1 for p in self.ports if p.kind == "opened"),
            "ports_closed": sum(1 for p in self.ports if p.kind == "closed"),
            "ports_changed": sum(1 for p in self.ports if p.kind == "changed"),
            "services_changed": len(self.services),
            "fingerprints_changed": len(self.fingerprints),
            "os_changed": len(self.os),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "counts": self.counts(),
            "hosts_appeared": [asdict(h) for h in self.appeared],
            "hosts_went_away": [asdict(h) for h in self.went_away],
            "ports": [asdict(p) for p in self.ports],
            "services": [asdict(s) for s in self.services],
            "os": [asdict(o) for o in self.os],
            "fingerprints": [asdict(f) for f in self.fingerprints],
        }


_COUNT_WORDS = {
    "hosts_appeared": ("host appeared", "hosts appeared"),
    "hosts_went_away": ("host went away", "hosts went away"),
    "ports_opened": ("port opened", "ports opened"),
    "ports_closed": ("port closed", "ports closed"),
    "ports_changed": ("other port state change", "other port state changes"),
    "services_changed": ("service changed", "services changed"),
    "fingerprints_changed": ("fingerprint changed", "fingerprints changed"),
    "os_changed": ("OS verdict changed", "OS verdicts changed"),
}


def diff_summary(d: RunDiff) -> str:
    """'1 host appeared, 2 ports opened' (or 'no changes')."""
    parts = [f"{n} {_COUNT_WORDS[k][n != 1]}" for k, n in d.counts().items() if n]
    return ", ".join(parts) if parts else "no changes"


def _run_info(run: ScanRun) -> dict[str, Any]:
    return {"id": run.id, "started": run.started, "args": list(run.args)}


def _addr_key(address: str) -> tuple:
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return (0, tuple(int(p) for p in parts), "")
    return (1, (), address)


def service_text(host: HostResult, protocol: str, port: int) -> str:
    for p in host.ports:
        if p.port == port and p.protocol == protocol and p.service is not None:
            return " ".join(x for x in (ns.service_name(p.service), ns.service_version(p.service)) if x)
    return ""


def _service_of(host: HostResult, protocol: str, port: int) -> Service | None:
    return next((p.service for p in host.ports if p.port == port and p.protocol == protocol), None)


def _cert_text(c: CertFacts | None) -> str:
    if c is None:
        return ""
    return f"SHA-256 {c.sha256}" + (f" ({c.subject}, until {c.not_after})" if c.subject else "")


def fingerprint_facts(svc: Service | None) -> dict[str, str]:
    """The facts whose change is a change, by name ('' = not measured in that run)."""
    out: dict[str, str] = {}
    if svc is None:
        return out
    t = svc.tls
    if t is not None:
        out["certificate"] = _cert_text(t.cert)
        out["JARM"] = t.jarm or ""
        out["JA3S"] = t.ja3s or ""
        out["TLS version"] = " ".join(x for x in (t.version, t.cipher) if x)
    s = svc.ssh
    if s is not None:
        out["HASSH"] = s.hassh or ""
        for k in s.host_keys:
            out[f"host key {k.type}"] = k.sha256
    return out


def _fingerprint_changes(addr: str, protocol: str, port: int, a: Service | None, b: Service | None
                         ) -> list[FingerprintChange]:
    """Facts measured in both runs that differ. Host keys are compared as a set when both runs read
    some (a key type that appears or goes is a change); anything one run did not measure (an older
    hostprint, -sV in one run only) is no claim either way."""
    fa, fb = fingerprint_facts(a), fingerprint_facts(b)
    keys_a = bool(a is not None and a.ssh is not None and a.ssh.host_keys)
    keys_b = bool(b is not None and b.ssh is not None and b.ssh.host_keys)
    out = []
    for what in list(fa) + [k for k in fb if k not in fa]:
        x, y = fa.get(what, ""), fb.get(what, "")
        if x == y:
            continue
        if what.startswith("host key"):
            if not (keys_a and keys_b):
                continue
        elif not (x and y):
            continue
        out.append(FingerprintChange(addr, protocol, port, what, x or "none", y or "none"))
    return out


def _open_list(host: HostResult) -> list[str]:
    out = []
    for p in host.ports:
        if p.state == OPEN:
            name = ns.service_name(p.service) if p.service else ""
            out.append(f"{p.port}/{p.protocol}" + (f" {name}" if name else ""))
    return out


def best_os(host: HostResult) -> tuple[str | None, float | None]:
    """The host verdict's best match (or its "unknown, nearest …") and its confidence."""
    matches = ns.os_matches(host)
    if matches:
        return matches[0].name, matches[0].confidence
    u = host.os.unknown
    if u is not None:
        return f"unknown (nearest {u.nearest})" if u.nearest else "unknown", None
    return None, None


class _PortView:
    """Every scanned port's state on one host of one run (listed, else its extraports state)."""

    def __init__(self, run: ScanRun, host: HostResult):
        self.listed = {(p.protocol, p.port): p.state for p in host.ports}
        self.scanned = {proto: set(ports) for proto, ports in run.ports_scanned.items()}
        self.folded: dict[str, set[str]] = {}
        for e in host.extraports:
            proto = ns.extraports_protocol(run, host, e) or "?"
            self.folded.setdefault(proto, set()).add(e.state)

    def state(self, protocol: str, port: int) -> str | None:
        """None = this run did not scan the port (no claim either way)."""
        s = self.listed.get((protocol, port))
        if s is not None:
            return s
        if port not in self.scanned.get(protocol, ()):
            return None
        states = self.folded.get(protocol) or self.folded.get("?") or set()
        return next(iter(states)) if len(states) == 1 else NOT_LISTED

    def keys(self) -> set[tuple[str, int]]:
        return set(self.listed)


def _kind(before: str, after: str) -> str:
    if after == OPEN:
        return "opened"
    if before == OPEN:
        return "closed"
    return "changed"


def diff_runs(a: ScanRun, b: ScanRun) -> RunDiff:
    """Changes from run `a` (reference, usually older) to run `b`."""
    d = RunDiff(_run_info(a), _run_info(b))
    ha = {h.address: h for h in a.hosts}
    hb = {h.address: h for h in b.hosts}
    for addr in sorted(set(ha) | set(hb), key=_addr_key):
        x, y = ha.get(addr), hb.get(addr)
        up_a = x is not None and x.status == "up"
        up_b = y is not None and y.status == "up"
        if up_b and not up_a:
            assert y is not None
            d.appeared.append(HostChange(addr, x.status if x else "absent", _open_list(y), best_os(y)[0]))
            continue
        if up_a and not up_b:
            assert x is not None
            d.went_away.append(HostChange(addr, y.status if y else "absent", _open_list(x), best_os(x)[0]))
            continue
        if not (up_a and up_b):
            continue
        assert x is not None and y is not None
        va, vb = _PortView(a, x), _PortView(b, y)
        for proto, port in sorted(va.keys() | vb.keys(), key=lambda k: (k[0], k[1])):
            sa, sb = va.state(proto, port), vb.state(proto, port)
            if sa is None or sb is None:
                continue
            if sa != sb:
                d.ports.append(PortChange(addr, proto, port, sa, sb, _kind(sa, sb)))
            elif sa == OPEN:
                ta, tb = service_text(x, proto, port), service_text(y, proto, port)
                if ta != tb:
                    d.services.append(ServiceChange(addr, proto, port, ta, tb))
                d.fingerprints += _fingerprint_changes(addr, proto, port, _service_of(x, proto, port),
                                                       _service_of(y, proto, port))
        (oa, ca), (ob, cb) = best_os(x), best_os(y)
        if oa != ob:
            d.os.append(OsChange(addr, oa, ob, ca, cb))
    return d
