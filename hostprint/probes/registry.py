"""Every technique hostprint runs, one line each (the contract: probes/base.py).

Modules are named, not imported, so a command pays only for what it uses (`passive` never loads
the raw-socket scanners). Order does not matter: each technique's `phase` orders a run.
"""

from __future__ import annotations

import importlib
from typing import Any

from hostprint.probes.base import Technique
from hostprint.probes.options import ScanOptions

TECHNIQUES = {
    "discovery": "hostprint.probes.discovery:DiscoveryTechnique",
    "tcp-scan": "hostprint.probes.tcpscan:TcpPortScan",
    "connect": "hostprint.probes.connect:ConnectPortScan",
    "udp": "hostprint.probes.udpscan:UdpPortScan",
    "service": "hostprint.probes.app:ServiceScan",
    "sequence": "hostprint.probes.sequence:SequenceTechnique",
    "timing": "hostprint.probes.timing:TimingTechnique",
    "stack": "hostprint.probes.stack_technique:StackTechnique",
    "traceroute": "hostprint.probes.traceroute:TracerouteTechnique",
    "ipproto": "hostprint.probes.ipproto:IpProtoTechnique",
    "idle": "hostprint.probes.idlescan:IdleTechnique",
    "enum": "hostprint.probes.enum:EnumTechnique",
}


def technique_class(name: str) -> type[Technique[Any]]:
    module, _, cls = TECHNIQUES[name].partition(":")
    t: type[Technique[Any]] = getattr(importlib.import_module(module), cls)
    return t


def create(options: ScanOptions, names: list[str] | None = None) -> list[Technique[Any]]:
    """The configured techniques `options` ask for, in run order, DBs loaded (UsageError now,
    before any packet)."""
    out: list[Technique[Any]] = []
    for name in names or list(TECHNIQUES):
        out.extend(technique_class(name).create(options))
    return sorted(out, key=lambda t: t.phase)
