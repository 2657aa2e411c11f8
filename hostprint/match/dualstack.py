"""--dual-stack: one machine reachable over IPv4 and IPv6 becomes one host with both addresses.

Nobody links the two families for you: nmap reports 198.18.0.10 and 2001:2::10 as two hosts, and so
does every inventory fed by it. The evidence, strongest first:
- **MAC**: both addresses answered ARP and Neighbor Discovery with the same link-layer address
  (on-link only; a router's MAC stands for everything behind it, so a MAC shared by more than one
  address of a family pairs nothing).
- **TCP timestamp clock**: a stack with one host clock (TSO=H: tcp_timestamps=2 on Linux, the BSDs,
  gVisor) shows the same counter on every connection; two addresses whose clocks run at the same
  rate and read the same value at the same moment (within the clock's slack) are one stack.
  Per-connection offsets (Linux's default, TSO=C) make this test impossible, and it is skipped.
- **SSH host key / TLS certificate**: the same key or certificate (SHA-256) on exactly one IPv4 and
  one IPv6 address. A key shared more widely (a cluster, or every sshd of one image) pairs nothing.
Each pairing says which evidence it rests on; conflicting evidence (two different MACs) prevents it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from hostprint.model import OPEN, HostResult

#: TS clocks: the same counter within this many ticks plus this share of the elapsed ticks
CLOCK_TICKS = 50
CLOCK_SLACK = 0.002


@dataclass
class Pairing:
    v4: str
    v6: str
    by: list[str] = field(default_factory=list)


def _family(addr: str) -> int:
    return 6 if ":" in addr else 4


def _clock(h: HostResult) -> tuple[float, int, float] | None:
    """(when, TSval, Hz) of a host's single TCP timestamp clock, from -O (os.stack data.ts_clock)."""
    stack = h.os.stack
    c = stack.data.get("ts_clock") if stack is not None else None
    if not isinstance(c, dict):
        return None
    try:
        return float(str(c["at"])), int(str(c["tsval"])), float(str(c["hz"]))
    except (KeyError, TypeError, ValueError):
        return None


def same_clock(a: tuple[float, int, float], b: tuple[float, int, float]) -> bool:
    (ta, va, ha), (tb, vb, hb) = a, b
    if abs(ha - hb) > 0.05 * max(ha, hb):
        return False
    hz = (ha + hb) / 2
    expected = va + hz * (tb - ta)
    d = abs(((vb - expected) + (1 << 31)) % (1 << 32) - (1 << 31))
    return d <= CLOCK_TICKS + CLOCK_SLACK * hz * abs(tb - ta)


def _unique(values: dict[str, str | None]) -> dict[str, tuple[str, str]]:
    """value -> (v4, v6) for values held by exactly one address of each family."""
    by: dict[str, list[str]] = {}
    for addr, v in values.items():
        if v:
            by.setdefault(v, []).append(addr)
    out = {}
    for v, addrs in by.items():
        v4 = [a for a in addrs if _family(a) == 4]
        v6 = [a for a in addrs if _family(a) == 6]
        if len(v4) == 1 and len(v6) == 1 and len(addrs) == 2:
            out[v] = (v4[0], v6[0])
    return out


def cert_of(h: HostResult) -> str | None:
    """The SHA-256 of the first TLS certificate -sV read on the host (service.tls.cert)."""
    for p in h.ports:
        tls = p.service.tls if p.service is not None else None
        if tls is not None and tls.cert is not None and tls.cert.sha256:
            return tls.cert.sha256
    return None


def find_pairs(hosts: list[HostResult], host_keys: dict[str, str] | None = None) -> list[Pairing]:
    """Which IPv4 and IPv6 hosts are one machine, with the evidence for each pairing."""
    up = [h for h in hosts if h.status == "up"]
    v4 = [h for h in up if _family(h.address) == 4]
    v6 = [h for h in up if _family(h.address) == 6]
    found: dict[tuple[str, str], Pairing] = {}
    against: set[tuple[str, str]] = set()

    def add(a4: str, a6: str, why: str) -> None:
        found.setdefault((a4, a6), Pairing(a4, a6)).by.append(why)

    macs = {h.address: (h.mac or "").lower() or None for h in up}
    for mac, (a4, a6) in _unique(macs).items():
        add(a4, a6, f"MAC {mac}")
    for h4 in v4:  # two MACs that differ speak against a pairing other evidence suggests
        for h6 in v6:
            if macs.get(h4.address) and macs.get(h6.address) and macs[h4.address] != macs[h6.address]:
                against.add((h4.address, h6.address))
    clocks = {h.address: c for h in up if (c := _clock(h)) is not None}
    for h4 in v4:
        c4 = clocks.get(h4.address)
        if c4 is None:
            continue
        hits = [h6.address for h6 in v6 if h6.address in clocks and same_clock(c4, clocks[h6.address])]
        if len(hits) == 1:
            add(h4.address, hits[0], f"TCP timestamp clock ({c4[2]:.0f} Hz)")
    for label, values in (("SSH host key", host_keys or {}), ("TLS certificate", {h.address: cert_of(h) for h in up})):
        for v, (a4, a6) in _unique(dict(values)).items():
            digest = v if label == "TLS certificate" else hashlib.sha256(v.encode()).hexdigest()
            add(a4, a6, f"{label} SHA-256 {digest[:16]}…")
    pairs = [p for k, p in found.items() if k not in against]
    # one partner per address: the pairing with the most evidence wins
    pairs.sort(key=lambda p: -len(p.by))
    used: set[str] = set()
    out = []
    for p in pairs:
        if p.v4 in used or p.v6 in used:
            continue
        used.update((p.v4, p.v6))
        out.append(p)
    return out


def merge(hosts: list[HostResult], pairs: list[Pairing]) -> list[HostResult]:
    """The hosts with each pair folded into its IPv4 record: `addresses` names the IPv6 address,
    the evidence and what was open there; the IPv6 record leaves the list."""
    by = {h.address: h for h in hosts}
    gone = set()
    for p in pairs:
        h4, h6 = by.get(p.v4), by.get(p.v6)
        if h4 is None or h6 is None:
            continue
        h4.addresses.append({"address": h6.address, "family": "ipv6", "paired_by": list(p.by),
                             "open": [f"{r.port}/{r.protocol}" for r in h6.ports if r.state == OPEN],
                             "reasons": list(h6.reasons)})
        for n in h6.hostnames:
            h4.add_hostname(n["name"], n.get("type", "PTR"))
        gone.add(h6.address)
    return [h for h in hosts if h.address not in gone]


def ssh_host_keys(hosts: list[HostResult], scan: Callable[[str, int], str | None]) -> dict[str, str]:
    """address -> its SSH host key (as `scan(address, port)` reads it) for up hosts with an open
    ssh port; `scan` is the command's (ssh-keyscan), so this module sends nothing itself."""
    out = {}
    for h in hosts:
        if h.status != "up":
            continue
        ssh = [p for p in h.ports if p.state == OPEN and p.protocol == "tcp" and p.service is not None
               and p.service.name == "ssh"]
        if not ssh:
            continue
        read = [k for p in ssh if p.service is not None and p.service.ssh is not None for k in p.service.ssh.host_keys]
        if read:  # -sV already read the keys (probes/ssh_kex.py): no second connection
            order = {"ssh-ed25519": 0, "ecdsa-sha2-nistp256": 1, "ssh-rsa": 2}
            k = min(read, key=lambda k: order.get(k.type, 9))
            out[h.address] = f"{k.type} {k.key}"
            continue
        port = ssh[0].port
        key = scan(h.address, port)
        if key:
            out[h.address] = key
    return out
