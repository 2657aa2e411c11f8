"""The results every probe writes and every report reads.

One small set of typed records shared by the engine, the probes, the matchers and the reports, so
that a new technique adds fields here and every output format picks them up from `to_dict()`.
The JSON lines schema in the README is exactly `HostResult.to_dict()` plus the `scan` block.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

# Port states and reasons use nmap's words so that nmap tooling reads our XML unchanged.
OPEN, CLOSED, FILTERED, UNFILTERED = "open", "closed", "filtered", "unfiltered"
OPEN_FILTERED, CLOSED_FILTERED = "open|filtered", "closed|filtered"
PORT_STATES = (OPEN, CLOSED, FILTERED, UNFILTERED, OPEN_FILTERED, CLOSED_FILTERED)

# A state seen on more than this many ports of a host is summarised as <extraports> (nmap's rule).
EXTRAPORTS_THRESHOLD = 25


@dataclass
class Service:
    """What listens on a port (filled by the port table, banners or triggers)."""

    name: str | None = None
    tunnel: str | None = None
    product: str | None = None
    version: str | None = None
    extrainfo: str | None = None
    hostname: str | None = None
    ostype: str | None = None
    devicetype: str | None = None
    cpe: list[str] = field(default_factory=list)
    method: str = "port-table"  # "banner" | "trigger" | "port-table"
    confidence: float = 0.3
    banner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PortResult:
    port: int
    protocol: str  # "tcp" | "udp"
    state: str
    reason: str  # nmap's reason words: syn-ack, reset, no-response, port-unreach, ...
    reason_ttl: int | None = None
    service: Service | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "port": self.port,
            "protocol": self.protocol,
            "state": self.state,
            "reason": self.reason,
            "reason_ttl": self.reason_ttl,
            "service": self.service.to_dict() if self.service else None,
        }
        return d


@dataclass
class ExtraPorts:
    """Ports of one state folded into a count, as nmap's <extraports>."""

    state: str
    count: int
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> count
    protocol: str | None = None  # "tcp" | "udp"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "count": self.count, "reasons": dict(self.reasons), "protocol": self.protocol}


@dataclass
class HostResult:
    address: str
    status: str = "unknown"  # "up" | "down" | "unknown"
    reasons: list[str] = field(default_factory=list)  # which discovery methods saw it: echo-reply, reset ...
    hostname: str | None = None
    mac: str | None = None
    distance: int | None = None  # hops, from the reply TTL
    rtt_us: float | None = None  # smallest round trip seen, from kernel timestamps
    ports: list[PortResult] = field(default_factory=list)  # the "interesting" ports
    extraports: list[ExtraPorts] = field(default_factory=list)
    os: dict[str, Any] = field(default_factory=dict)  # filled by the OS issues: matches, stack, timing ...
    sequence: dict[str, Any] = field(default_factory=dict)  # IP ID / ISN predictability report
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "status": self.status,
            "reasons": list(self.reasons),
            "hostname": self.hostname,
            "mac": self.mac,
            "distance": self.distance,
            "rtt_us": self.rtt_us,
            "ports": [p.to_dict() for p in self.ports],
            "extraports": [e.to_dict() for e in self.extraports],
            "os": self.os,
            "sequence": self.sequence,
        }

    def set_ports(self, results: list[PortResult], threshold: int = EXTRAPORTS_THRESHOLD) -> None:
        """Store port results, folding any state seen on more than `threshold` ports into extraports.

        Open ports are never folded: they are what users scan for.
        """
        by_state: dict[tuple[str, str], list[PortResult]] = {}
        for r in results:
            by_state.setdefault((r.protocol, r.state), []).append(r)
        keep: list[PortResult] = []
        extra: list[ExtraPorts] = []
        for (proto, state), rs in by_state.items():
            if state != OPEN and len(rs) > threshold:
                reasons: dict[str, int] = {}
                for r in rs:
                    reasons[r.reason] = reasons.get(r.reason, 0) + 1
                extra.append(ExtraPorts(state, len(rs), reasons, proto))
            else:
                keep.extend(rs)
        keep.sort(key=lambda r: (r.protocol, r.port))
        extra.sort(key=lambda e: -e.count)
        self.ports = keep
        self.extraports = extra


@dataclass
class ScanRun:
    """One invocation: what was asked, when, and every host it learned about."""

    args: list[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    finished: float | None = None
    scan_types: list[str] = field(default_factory=list)  # e.g. ["syn", "udp"] (nmap XML <scaninfo>)
    ports_scanned: dict[str, list[int]] = field(default_factory=dict)  # protocol -> ports
    hosts: list[HostResult] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # probes sent, retransmissions, rate ...

    def scan_dict(self) -> dict[str, Any]:
        return {"id": self.id, "started": self.started, "finished": self.finished, "args": list(self.args)}

    def host_record(self, host: HostResult) -> dict[str, Any]:
        """One JSON-lines object: a host plus the `scan` block."""
        d = host.to_dict()
        d["scan"] = self.scan_dict()
        return d
