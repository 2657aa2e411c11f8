"""What one address has shown over a capture: its stacks, TTLs, timestamp clocks and HTTP claims.

Kept apart from the packet path because this is where the judgements are made that need more
than one packet: the most frequent OS verdict, uptime from a TCP timestamp clock, NAT / shared
address evidence (several OS families, initial TTLs, timestamp clocks or User-Agent OSes behind
one address; p0f README section 6 names the same kinds of evidence) and "dishonest" software.
Every container is capped, so a host costs a few kB however long it talks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Timestamp clock sanity limits (reference §1.8, p0f config.h): rates outside 0.7-1500 Hz, fewer
# than 5 ticks or less than 100 ms between samples give no usable clock.
MIN_TSCALE, MAX_TSCALE, MIN_TICKS, TSTAMP_GRACE_S = 0.7, 1500.0, 5, 0.1
# TTL changes smaller than this are path changes, not another stack (p0f config.h SMALL_TTL_CHG).
SMALL_TTL_CHG = 2


@dataclass(slots=True)
class HostState:
    """Evidence gathered for one address; `summary()` is the per-host record."""

    address: str
    first_ts: float
    last_ts: float
    count: dict[str, int] = field(default_factory=dict)  # role -> observations
    labels: dict[str, int] = field(default_factory=dict)  # "client:Linux 3.11 and newer" -> count
    families: dict[str, set] = field(default_factory=dict)  # role -> OS families matched
    sigs: dict[str, int] = field(default_factory=dict)  # raw signature -> count (capped)
    ittls: set = field(default_factory=set)
    ttls: set = field(default_factory=set)
    distance: int | None = None
    mtu: int | None = None
    link: str | None = None
    ports: set = field(default_factory=set)  # server ports (capped)
    clocks: dict = field(default_factory=dict)  # role -> [[t0, v0, t_last, v_last, hz, samples], ...]
    ts_samples: int = 0
    ts_confirmed: bool = False
    apps: dict[str, int] = field(default_factory=dict)  # HTTP software labels / UA strings (capped)
    user_agents: set = field(default_factory=set)
    servers: set = field(default_factory=set)
    ua_os: set = field(default_factory=set)
    dishonest: list = field(default_factory=list)
    best: dict | None = None  # os dict of the most frequent TCP match
    best_n: int = 0

    def summary(self) -> dict[str, Any]:
        reasons = []
        fams = set()
        for f in self.families.get("client", set()):
            fams.add(f)
        if len(fams) > 1:
            reasons.append("os_sig: several OS families from one address: " + ", ".join(sorted(fams)))
        ittls = sorted(self.ittls)
        if len(ittls) > 1:
            reasons.append(f"ttl: initial TTLs {ittls}")
        else:
            ts = sorted(self.ttls)
            if ts and ts[-1] - ts[0] > SMALL_TTL_CHG and len(self.families.get("client", ())) > 1:
                reasons.append(f"ttl: TTLs {ts}")
        confirmed = [c for cs in self.clocks.values() for c in cs if c[4] is not None and c[5] >= 2]
        if len(confirmed) > 1:
            reasons.append(f"tstamp: {len(confirmed)} independent TCP timestamp clocks")
        if len(self.ua_os) > 1:
            reasons.append("app: User-Agents name several OSes: " + ", ".join(sorted(self.ua_os)))
        uptime = None
        if confirmed:
            c = max(confirmed, key=lambda c: c[5])
            hz = c[4]
            up = c[3] / hz
            uptime = {"clock_hz": hz, "uptime_s": round(up), "samples": c[5],
                      "text": f"{int(up // 86400)} days {int(up % 86400 // 3600)} hrs {int(up % 3600 // 60)} min",
                      "modulo_days": round(0xFFFFFFFF / hz / 86400, 1)}
        timestamps = None
        if self.ts_samples:
            timestamps = ("one clock" if len(confirmed) == 1 else f"{len(confirmed)} clocks" if confirmed
                          else "random offset per connection" if self.ts_samples >= 3 else "too few samples")
        return {
            "address": self.address, "first_seen": self.first_ts, "last_seen": self.last_ts,
            "observations": dict(self.count), "os": self.best, "labels": dict(self.labels),
            "distance": self.distance, "mtu": self.mtu, "link": self.link,
            "initial_ttls": ittls, "server_ports": sorted(self.ports),
            "signatures": dict(sorted(self.sigs.items(), key=lambda kv: -kv[1])[:8]),
            "uptime": uptime, "timestamps": timestamps,
            "http": {"user_agents": sorted(self.user_agents)[:8], "servers": sorted(self.servers)[:8],
                     "apps": dict(self.apps), "ua_os": sorted(self.ua_os)} if (self.apps or self.user_agents or self.servers) else None,
            "dishonest": self.dishonest[:4],
            "nat": {"suspected": bool(reasons), "reasons": reasons},
        }

    def add_timestamp(self, role: str, ts: float, tsval: int) -> None:
        """Group a host's SYN timestamps into clocks: a sample joins a clock when the ticks since
        its last sample fit a plausible rate (0.7-1500 Hz; the learned rate once known), else it
        starts a new candidate. Stacks with one global clock (BSDs, Windows, Linux with
        tcp_timestamps=2) give one confirmed clock and so an uptime; Linux >= 4.10 with
        tcp_timestamps=1 offsets every connection randomly (ip-sysctl.rst), so no two samples fit
        and no uptime is claimed. Two confirmed clocks behind one address = NAT evidence."""
        self.ts_samples += 1
        if self.ts_samples > 16 and not self.ts_confirmed:
            return  # 16 samples and no two on one clock: per-connection offsets; stop trying
        clocks = self.clocks.setdefault(role, [])
        for c in clocks:
            t_last, v_last, hz = c[2], c[3], c[4]
            dt = ts - t_last
            if dt < TSTAMP_GRACE_S:
                continue
            dv = (tsval - v_last) & 0xFFFFFFFF
            if hz is None:
                rate = dv / dt
                if dv < MIN_TICKS or not MIN_TSCALE <= rate <= MAX_TSCALE:
                    continue
                c[4] = round_hz(rate)
            else:
                expect = hz * dt
                if abs(dv - expect) > max(0.1 * expect, MIN_TICKS):
                    continue
            c[2], c[3] = ts, tsval
            c[5] += 1
            self.ts_confirmed = True
            return
        if len(clocks) < 8:
            clocks.append([ts, tsval, ts, tsval, None, 1])


def same_os(claimed: str, family: str) -> bool:
    a, b = claimed.lower(), family.lower()
    alias = {"mac os x": "macos", "ios": "macos", "macos x": "macos"}
    return alias.get(a, a) in (alias.get(b, b)) or alias.get(b, b) in alias.get(a, a)


def round_hz(rate: float) -> float:
    """Clock rates are round numbers (10, 100, 250, 1000 Hz ...); round like p0f (to 1/5/10/50/100)."""
    if rate < 1:
        return round(rate, 1)
    for lim, step in ((10, 1), (100, 5), (500, 10), (1000, 50), (10**9, 100)):
        if rate <= lim:
            return float(round(rate / step) * step)
    return float(round(rate))


def addr_key(a: str) -> tuple:
    try:
        import ipaddress

        ip = ipaddress.ip_address(a)
        return (ip.version, int(ip))
    except ValueError:
        return (9, a)
