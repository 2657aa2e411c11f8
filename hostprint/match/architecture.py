"""What sits between us and the stacks that answer: evidence that one address is served by more
than one machine.

Port forwarding / NAT: replies from different ports of one address carry TTLs that imply different
initial TTLs (different stacks) or different hop counts (a machine behind the forwarding one). The
TTL of every reply is already in the port scan's results (reason_ttl), so this costs no probe.
Other findings (SYN relay from timing tests, load balancers from several clocks) are added by their
techniques to the same `os.architecture` list (model.ArchitectureFinding).
"""

from __future__ import annotations

from hostprint import model
from hostprint.model import ArchitectureFinding, OsMatch, Twin
from hostprint.signatures.knowledge import relays
from hostprint.stackfacts import initial_ttl, on_clock


def from_port_ttls(host: model.HostResult) -> list[ArchitectureFinding]:
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
    return [ArchitectureFinding(kind, detail, "ports")]


def from_twins(twins: list[Twin], ts_rate: float | None) -> list[ArchitectureFinding]:
    """Load balancing: identical SYNs from different source ports answered by different stacks
    (option layout, window, initial TTL, hop count or DF differ), or by several TCP timestamp clocks
    or IP ID counters.

    Evidence one host cannot produce: the answers must *alternate* between the stacks in time
    (some stack answers both before and after another). One host changes its answers at most once
    during a probe: when its SYN backlog fills with our half-open connections it switches to SYN
    cookies for the rest (gVisor's cookie SYN-ACKs drop window scale and SACK; lwIP-sized backlogs
    fill after a few SYNs), and a counter or clock that jumps once does so once. A balancer sends
    consecutive connections to different backends, so their answers interleave.

    Clocks are compared only when one connection gave the rate (probes/stack.py): a stack that
    draws a random offset per connection (Linux) shows one "clock" per connection, so only groups of
    two or more answers on one clock count, and every answer must sit on one of them."""
    if len(twins) < 2:
        return []
    twins = sorted(twins, key=lambda t: t.at)
    shapes: dict[tuple[str, str, str, str, str], list[str]] = {}
    for t in twins:
        shapes.setdefault((t.options, t.window, t.ittl, t.hops, t.df), []).append(t.probe)
    if len(shapes) > 1 and _interleaved([(t.options, t.window, t.ittl, t.hops, t.df) for t in twins]):
        parts = [f"{len(ps)} answer{'s' if len(ps) > 1 else ''} with options {k[0] or '-'} window {k[1]} "
                 f"initial TTL {int(k[2], 16)} {k[3]} hop{'s' if k[3] != '1' else ''} DF {k[4]}"
                 for k, ps in sorted(shapes.items(), key=lambda kv: -len(kv[1]))]
        return [ArchitectureFinding("load-balancer",
                                    f"{len(twins)} identical SYNs met {len(shapes)} different stacks: " + "; ".join(parts),
                                    "stack")]
    counters = _ipid_counters(twins)
    if counters and _interleaved(_labels(counters, [t.ipid for t in twins if t.ipid is not None])):
        return [ArchitectureFinding("load-balancer",
                                    f"{len(twins)} identical SYNs were answered from {len(counters)} IP ID counters "
                                    f"({', '.join(f'{c[0]}..{c[-1]}' for c in counters)})", "stack")]
    stamped = [(t.at, t.ts) for t in twins if t.ts is not None]
    if ts_rate and len(stamped) >= 4:
        clocks: list[list[tuple[float, int]]] = []
        for at, ts in stamped:  # one list per clock: an answer joins the first clock it continues
            for c in clocks:
                if on_clock(c[0][0], c[0][1], at, ts, ts_rate):
                    c.append((at, ts))
                    break
            else:
                clocks.append([(at, ts)])
        shared = [c for c in clocks if len(c) >= 2]
        if len(shared) >= 2 and sum(len(c) for c in shared) == len(stamped) \
                and _interleaved(_labels([[ts for _, ts in c] for c in shared], [ts for _, ts in stamped])):
            return [ArchitectureFinding("load-balancer",
                                        f"{len(stamped)} identical SYNs were answered by {len(shared)} TCP timestamp "
                                        f"clocks ({', '.join(str(len(c)) for c in shared)} answers each, "
                                        f"{ts_rate:.0f} Hz)", "stack")]
    return []


def from_stack_class(best: OsMatch | None) -> list[ArchitectureFinding]:
    """The best stack class is a relay (SYN proxy, user-mode NAT; signatures/knowledge/relays.txt):
    say so, since the OS classes of the other methods then describe the machine behind it, not the
    one that answered -O. Only our own class DB names relays."""
    if best is None or not (best.db or "").startswith("hostprint"):
        return []
    relay = relays().get(best.family or "")
    if relay is None:
        return []
    return [ArchitectureFinding(relay.kind, f"{relay.answers} is answered by {best.name} ({best.confidence:.0%} of its "
                                            "class), not by the target host's own stack", "stack")]


def _interleaved(labels: list[object]) -> bool:
    """Do the groups alternate in time (more runs of equal labels than groups)? A B A is; A A B B,
    a single switch, is what one host whose answers change once shows."""
    runs = 1 + sum(1 for a, b in zip(labels, labels[1:]) if a != b)
    return runs > len(set(labels))


def _labels(groups: list[list[int]], values: list[int]) -> list[object]:
    """The index of the group each value (in time order) belongs to."""
    where: dict[int, int] = {}
    for i, g in enumerate(groups):
        for v in g:
            where.setdefault(v, i)
    return [where.get(v, -1) for v in values]


def _ipid_counters(twins: list[Twin]) -> list[list[int]]:
    """Several incrementing IP ID counters among identical answers (a host with one global or
    per-destination counter shows one). Each ID joins the counter whose last ID it follows by 1-2000;
    only counters of two or more IDs covering every answer count, so random or zero IDs claim nothing."""
    ids = [t.ipid for t in sorted(twins, key=lambda t: t.at) if t.ipid is not None]
    if len(ids) < 4 or 0 in ids:
        return []
    chains: list[list[int]] = []
    for i in ids:
        for c in chains:
            if 0 < (i - c[-1]) & 0xFFFF <= 2000:
                c.append(i)
                break
        else:
            chains.append([i])
    # One counter whose answers come back out of order (gVisor answers SYNs concurrently: measured
    # with runsc, IDs 55747..55763 arrived as 55747, 55756, 55749 ...) breaks into chains that lie
    # within a few IDs of each other; another machine's counter starts anywhere in the 16-bit space.
    merged: list[list[int]] = []
    for c in chains:
        for m in merged:
            if any(_id_gap(a, b) <= ID_NEAR for a in c for b in m):
                m.extend(c)
                break
        else:
            merged.append(list(c))
    return merged if len(merged) >= 2 and all(len(c) >= 2 for c in merged) else []


#: IP IDs this close (mod 2^16) belong to one counter, whatever order their answers came in.
ID_NEAR = 2000


def _id_gap(a: int, b: int) -> int:
    d = (a - b) & 0xFFFF
    return min(d, 0x10000 - d)
