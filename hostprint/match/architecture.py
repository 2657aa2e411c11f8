"""What sits between us and the stacks that answer: evidence that one address is served by more
than one machine.

Port forwarding / NAT: replies from different ports of one address carry TTLs that imply different
initial TTLs (different stacks) or different hop counts (a machine behind the forwarding one). The
TTL of every reply is already in the port scan's results (reason_ttl), so this costs no probe.
Other findings (SYN relay from timing tests, load balancers from several clocks) are added by their
probes under the same `os.architecture` list: {"kind", "detail"}.
"""

from __future__ import annotations

from hostprint import model

INITIAL_TTLS = (32, 64, 128, 255)


def initial_ttl(ttl: int) -> int:
    return next((t for t in INITIAL_TTLS if ttl <= t), 255)


def from_port_ttls(host: model.HostResult) -> list[dict[str, str]]:
    """Group the open TCP ports by (initial TTL, hops); more than one group means forwarding."""
    groups: dict[tuple[int, int], list[int]] = {}
    for p in host.ports:
        if p.protocol == "tcp" and p.state == model.OPEN and p.reason_ttl:
            init = initial_ttl(p.reason_ttl)
            groups.setdefault((init, init - p.reason_ttl + 1), []).append(p.port)
    if len(groups) < 2:
        return []
    parts = [f"ports {','.join(map(str, sorted(ps)))}: initial TTL {init}, {hops} hop{'s' if hops != 1 else ''}"
             for (init, hops), ps in sorted(groups.items(), key=lambda kv: kv[0][1])]
    nearest = min(groups, key=lambda k: k[1])
    behind = [p for k, ps in groups.items() if k != nearest for p in ps]
    kind = "port-forward" if any(k[0] == nearest[0] for k in groups if k != nearest) else "nat"
    detail = (f"{len(groups)} stacks answer for {host.address}: " + "; ".join(parts)
              + f" (ports {','.join(map(str, sorted(behind)))} are forwarded to another machine)")
    return [{"kind": kind, "detail": detail}]
