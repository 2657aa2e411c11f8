"""The address space random targets come from (-iR): signatures/address_space.txt, IANA's
special-purpose, multicast and allocation registries as DB entries, each with its source.

`never(family)` is every block -iR must skip (sorted, merged integer intervals);
`allocated(6)` the IPv6 blocks IANA has handed to the RIRs (random IPv6 targets come from these;
IPv4 has no unallocated unicast /8 left, so its targets come from the whole space minus `never`).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.records import load_records

PATH = Path(__file__).with_name("address_space.txt")
REGISTRIES = frozenset({"special-purpose", "multicast", "reserved", "allocated"})


@dataclass(frozen=True)
class Block:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    registry: str
    name: str
    sources: tuple[str, ...]

    @property
    def family(self) -> int:
        return self.network.version

    @property
    def interval(self) -> tuple[int, int]:
        return int(self.network.network_address), int(self.network.broadcast_address)


@functools.lru_cache(maxsize=4)
def blocks(path: Path = PATH) -> tuple[Block, ...]:
    out = []
    for r in load_records(path, frozenset({"Block"}), frozenset({"Registry", "Name"})):
        try:
            net = ipaddress.ip_network(r.name, strict=True)
        except ValueError as e:
            raise UsageError(f"{r.where}: bad block {r.name!r}: {e}") from None
        reg = r.one("Registry")
        if reg not in REGISTRIES:
            raise UsageError(f"{r.where}: Registry must be one of {', '.join(sorted(REGISTRIES))}")
        out.append(Block(net, reg, r.one("Name") or "", tuple(r.sources)))
    return tuple(out)


def merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


@functools.lru_cache(maxsize=4)
def never(family: int) -> tuple[tuple[int, int], ...]:
    """Merged (first, last) integer intervals -iR never picks in this family."""
    return merge([b.interval for b in blocks() if b.family == family and b.registry != "allocated"])


@functools.lru_cache(maxsize=4)
def allocated(family: int) -> tuple[tuple[int, int], ...]:
    return merge([b.interval for b in blocks() if b.family == family and b.registry == "allocated"])


def which(addr: str) -> Block | None:
    """The most specific never-block holding `addr` (for messages and tests)."""
    a = ipaddress.ip_address(addr)
    hits = [b for b in blocks() if b.registry != "allocated" and b.family == a.version and a in b.network]
    return max(hits, key=lambda b: b.network.prefixlen) if hits else None
