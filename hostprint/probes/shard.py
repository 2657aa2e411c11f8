"""Shards: `--shards N --shard i --seed S` splits one job's target × port space between N runs, as
zmap and masscan do (every machine runs the same command with the same seed and its own shard; the
shards are disjoint and together cover everything; their outputs concatenate).

The space is every (address, port) pair of the job: the addresses sorted and de-duplicated (so the
order targets were typed in, or a name that resolved in another order, does not matter), the ports
sorted per protocol (tcp, then udp, then sctp). One keyed bijection puts the pairs in a seeded order:

    position(host h, port item p) = ph(h) * P + pp(p)

where ph and pp are keyed permutations (a 4-round Feistel network over the next even power of two,
cycle-walking into the domain; keys from blake2b of the seed) of the hosts and of the P port items.
Shard i of N takes the positions [b_i, b_i+1): with at least as many hosts as shards the
boundaries fall between hosts (b_i = floor(i*H/N)*P: every host whole in one shard, a random sample
of the hosts in each), otherwise b_i = floor(i*H*P/N) and a host's ports are split between shards.
Disjoint and complete by construction: a bijection, cut into consecutive ranges.

Each technique shards what it iterates over: port scans and -sV the pairs of the shard; host-level
techniques (-O, --sequence, --cron-os timing, --traceroute) the hosts, each in its *owner* shard (the
one holding the host's first port position). Discovery runs wherever a host has ports, since a shard
must know a host is up before probing its ports (a few packets per split host). A split host's
owner sees only its own share of the ports when it runs -O; `hostprint cluster` never splits a host
when a host-level technique is asked.

The plan depends only on (sorted targets, sorted ports, N, i, seed): the same on every machine,
with no coordination, whatever numpy or Python version runs it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

import numpy as np

from hostprint.errors import UsageError

PROTOCOLS = ("tcp", "udp", "sctp")
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
#: host-level phases start here (probes/runner.py SERVICES_PHASE is -sV, per port)
HOST_LEVEL_PHASE = 30


class Permutation:
    """A keyed bijection of [0, n): `perm[positions]` gives the element at each position."""

    ROUNDS = 4

    def __init__(self, n: int, seed: int, domain: str):
        if n < 1:
            raise ValueError("empty domain")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = np.uint64((1 << self.half) - 1)
        digest = hashlib.blake2b(f"hostprint-shard:{domain}:{seed}".encode(), digest_size=8 * self.ROUNDS).digest()
        self.keys = [np.uint64(int.from_bytes(digest[8 * r:8 * r + 8], "little")) for r in range(self.ROUNDS)]

    @staticmethod
    def _mix(z: np.ndarray) -> np.ndarray:
        """splitmix64's finaliser (uint64 arithmetic wraps)."""
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (self._mix(right ^ k) & self.mask)
        return (left << h) | right

    def __getitem__(self, positions: np.ndarray | range) -> np.ndarray:
        x = np.asarray(positions, dtype=np.uint64)
        if x.size and (int(x.max()) >= self.n):
            raise IndexError("position outside the domain")
        with np.errstate(over="ignore"):
            y = self._encrypt(x)
            n = np.uint64(self.n)
            out = y >= n
            while out.any():  # cycle walking: a bijection of [0, 2^bits) restricted to [0, n)
                y[out] = self._encrypt(y[out])
                out = y >= n
        return y.astype(np.int64)


def canonical_hosts(addresses: list[str]) -> list[str]:
    """Sorted, each once: IPv4 before IPv6, numerically."""
    def key(a: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        return ip.version, int(ip)

    return sorted(dict.fromkeys(addresses), key=key)


def port_items(ports: dict[str, list[int]]) -> list[tuple[str, int]]:
    return [(proto, p) for proto in PROTOCOLS for p in sorted(set(ports.get(proto) or []))]


def space_id(hosts: list[str], items: list[tuple[str, int]], count: int, seed: int) -> str:
    """Names the job a shard belongs to: shards of one job have the same hosts, ports, N and seed."""
    h = hashlib.blake2b(digest_size=6)
    h.update(f"{count}:{seed}\n".encode())
    h.update("\n".join(hosts).encode())
    h.update(b"\n--\n")
    h.update(",".join(f"{p}/{n}" for p, n in items).encode())
    return h.hexdigest()


@dataclass
class Part:
    """Hosts of one shard that share a port list: all the job's ports (whole hosts) or a share of
    one split host's. `owner`: host-level techniques run on these hosts here."""

    addresses: list[str]
    ports: dict[str, list[int]]
    owner: bool = True
    whole: bool = True


@dataclass
class ShardPlan:
    spec: ShardSpec
    parts: list[Part]
    hosts_total: int
    items_total: int
    pairs: int
    space: str
    split: list[str] = field(default_factory=list)  # addresses whose ports are shared with other shards

    @property
    def addresses(self) -> list[str]:
        return [a for p in self.parts for a in p.addresses]

    def describe(self) -> dict[str, object]:
        """What outputs record about the shard (run stats, -oJ host records)."""
        return {"index": self.spec.index, "count": self.spec.count, "seed": self.spec.seed, "space": self.space}


@dataclass(frozen=True)
class ShardSpec:
    count: int = 1
    index: int = 0
    seed: int = 0

    def bounds(self, hosts: int, items: int, index: int | None = None) -> tuple[int, int]:
        """Positions [lo, hi) of shard `index` (default: this one) in the job's order."""
        i = self.index if index is None else index
        n = self.count
        if hosts >= n:
            return (i * hosts // n) * items, ((i + 1) * hosts // n) * items
        total = hosts * items
        return i * total // n, (i + 1) * total // n

    def plan(self, targets: list[str], ports: dict[str, list[int]]) -> ShardPlan:
        """This shard's hosts and ports. `targets` in any order (names already resolved)."""
        hosts = canonical_hosts(targets)
        items = port_items(ports)
        H, P = len(hosts), max(len(items), 1)
        space = space_id(hosts, items, self.count, self.seed)
        if not hosts:
            return ShardPlan(self, [], 0, len(items), 0, space)
        lo, hi = self.bounds(H, P)
        parts: list[Part] = []
        split: list[str] = []
        if hi <= lo:
            return ShardPlan(self, [], H, len(items), 0, space)
        hperm = Permutation(H, self.seed, "hosts")
        first, last = lo // P, (hi - 1) // P
        if not items:  # host discovery only: the space is the hosts
            idx = hperm[range(first, last + 1)]
            return ShardPlan(self, [Part([hosts[i] for i in idx], {}, True)], H, 0, hi - lo, space)
        pperm = Permutation(P, self.seed, "ports")

        def cut(r: int) -> tuple[int, int]:
            return max(lo - r * P, 0), min(hi - r * P, P)

        def share(r: int) -> Part:
            qlo, qhi = cut(r)
            chosen: dict[str, list[int]] = {}
            for q in pperm[range(qlo, qhi)]:
                proto, port = items[int(q)]
                chosen.setdefault(proto, []).append(port)
            addr = hosts[int(hperm[range(r, r + 1)][0])]
            split.append(addr)
            return Part([addr], {k: sorted(v) for k, v in chosen.items()}, owner=qlo == 0, whole=False)

        partial = [r for r in dict.fromkeys((first, last)) if cut(r) != (0, P)]
        w_from = first + (first in partial)
        w_to = last + 1 - (last in partial and last != first)
        if w_to > w_from:
            idx = hperm[range(w_from, w_to)]
            full = {proto: sorted({p for pr, p in items if pr == proto}) for proto in PROTOCOLS}
            parts.append(Part([hosts[i] for i in idx], {k: v for k, v in full.items() if v}, True))
        parts.extend(share(r) for r in partial)
        return ShardPlan(self, parts, H, len(items), hi - lo, space, split)


def parse_shard(shards: int | None, shard: str | None, seed: str | int | None) -> ShardSpec | None:
    """--shards N --shard i (zmap: 0-based) or --shard x/y (masscan: 1-based), --seed S.
    None when the run is not sharded. One line naming the bad value otherwise."""
    if shards is None and shard is None:
        if seed is not None:
            parse_seed(seed)
        return None
    if shard is None:
        raise UsageError(f"--shards {shards}: give --shard i too (0 to {shards - 1 if shards else 0})")
    text = str(shard).strip()
    if "/" in text:  # masscan's x/y, 1-based
        x, _, y = text.partition("/")
        if not (x.isdigit() and y.isdigit()) or not 1 <= int(x) <= int(y):
            raise UsageError(f"bad --shard '{shard}': masscan's form is x/y with 1 <= x <= y (e.g. 1/3)")
        if shards is not None and shards != int(y):
            raise UsageError(f"--shard {shard} says {y} shards but --shards says {shards}")
        count, index = int(y), int(x) - 1
    else:
        if not text.isdigit():
            raise UsageError(f"bad --shard '{shard}': use i (0-based, with --shards N) or x/y (1-based)")
        if shards is None:
            raise UsageError(f"--shard {shard}: give --shards N too (or write --shard {int(text) + 1}/N)")
        count, index = shards, int(text)
    if count < 1 or count > 1 << 20:
        raise UsageError(f"bad --shards '{count}': use 1 to {1 << 20}")
    if not 0 <= index < count:
        raise UsageError(f"bad --shard '{shard}': shard numbers of --shards {count} are 0 to {count - 1}")
    if seed is None:
        if count > 1:
            raise UsageError(f"--shards {count}: give --seed S, the same on every shard (without one, shards of "
                             f"zmap and masscan overlap: masscan#531)")
        seed = 0
    return ShardSpec(count, index, parse_seed(seed))


def parse_seed(text: str | int) -> int:
    s = str(text).strip()
    if not s.isdigit() or int(s) >= 1 << 64:
        raise UsageError(f"bad --seed '{text}': use a whole number from 0 to 2^64-1")
    return int(s)


def owner_shard(spec: ShardSpec, targets: list[str], ports: dict[str, list[int]], address: str) -> int:
    """The shard that runs host-level techniques for `address` (tests and merge use it)."""
    hosts = canonical_hosts(targets)
    items = port_items(ports)
    H, P = len(hosts), max(len(items), 1)
    hperm = Permutation(H, spec.seed, "hosts")
    order = hperm[range(H)]
    r = int(np.nonzero(order == hosts.index(address))[0][0])
    pos = r * P
    for i in range(spec.count):
        lo, hi = spec.bounds(H, P, i)
        if lo <= pos < hi:
            return i
    raise ValueError(address)
