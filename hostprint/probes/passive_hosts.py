"""What one address has shown over a capture: its stacks, TTLs, timestamp clocks and HTTP claims.

Kept apart from the packet path because this is where the judgements are made that need more
than one packet: the most frequent OS verdict, uptime from a TCP timestamp clock, NAT / shared
address evidence (several OS families, initial TTLs, timestamp clocks or User-Agent OSes behind
one address; p0f README section 6 names the same kinds of evidence) and "dishonest" software.

Memory: every container is capped and compact, so a host costs at most ~4.5 kB however hostile its
traffic (~1 kB for a typical one) (a capture built to fill every cap: tests/hostile_capture.py). The caps: SIGS_MAX distinct
raw signatures (counted), every TTL and initial TTL as a 256-bit map, PORTS_MAX server ports (2
bytes each), CLOCKS_MAX timestamp-clock candidates per role (6 doubles each), APPS_MAX HTTP
software labels, SOFTWARE_MAX User-Agent and Server strings of at most TEXT_MAX characters,
UA_OS_MAX claimed OSes, DISHONEST_MAX findings; containers exist only once something is in them.
The analyzer holds at most `max_hosts` of these in memory (probes/passive.py); the least recently
seen half of a full table goes to a `HostSpill` on disk and comes back when the address shows up
again, so a big capture costs disk, not memory, and no host is lost or split in two.
"""

from __future__ import annotations

import pickle
import sqlite3
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

# Timestamp clock sanity limits (reference §1.8, p0f config.h): rates outside 0.7-1500 Hz, fewer
# than 5 ticks or less than 100 ms between samples give no usable clock.
MIN_TSCALE, MAX_TSCALE, MIN_TICKS, TSTAMP_GRACE_S = 0.7, 1500.0, 5, 0.1
# TTL changes smaller than this are path changes, not another stack (p0f config.h SMALL_TTL_CHG).
SMALL_TTL_CHG = 2

SIGS_MAX, PORTS_MAX, CLOCKS_MAX, APPS_MAX = 6, 64, 4, 8
SOFTWARE_MAX, TEXT_MAX, UA_OS_MAX, DISHONEST_MAX = 2, 128, 4, 2
#: a clock candidate in HostState.clocks[role]: 6 doubles t0, v0, t_last, v_last, hz (0 = not yet), samples
_T0, _V0, _TL, _VL, _HZ, _N = range(6)


def _bits(mask: int) -> list[int]:
    return [i for i in range(256) if mask >> i & 1]


class HostState:
    """Evidence gathered for one address; `summary()` is the per-host record."""

    __slots__ = ("address", "first_ts", "last_ts", "count", "labels", "families", "sigs", "ittl_bits", "ttl_bits",
                 "distance", "mtu", "link", "ports", "clocks", "ts_samples", "ts_confirmed", "apps", "user_agents",
                 "servers", "ua_os", "dishonest", "best", "best_n")

    def __init__(self, address: str, first_ts: float, last_ts: float):
        self.address = address
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.count: dict[str, int] = {}  # role -> observations
        self.labels: dict[str, int] = {}  # "client:Linux 3.11 and newer" -> count
        self.families: dict[str, set[str]] | None = None  # role -> OS families matched
        self.sigs: dict[str, int] = {}  # raw signature -> count (SIGS_MAX)
        self.ittl_bits = 0
        self.ttl_bits = 0
        self.distance: int | None = None
        self.mtu: int | None = None
        self.link: str | None = None
        self.ports: array[int] | None = None  # server ports seen in SYN+ACKs
        self.clocks: dict[str, array[float]] | None = None
        self.ts_samples = 0
        self.ts_confirmed = False
        self.apps: dict[str, int] | None = None  # HTTP software labels
        self.user_agents: list[str] | None = None
        self.servers: list[str] | None = None
        self.ua_os: list[str] | None = None
        self.dishonest: list[str] | None = None
        self.best: dict[str, Any] | None = None  # os dict of the most frequent TCP match (shared, not copied)
        self.best_n = 0

    # -- bookkeeping (the analyzer's packet path) -------------------------------------------------


    def seen(self, ts: float) -> None:
        """The first and last times stay the earliest and latest seen, whatever order packets are
        handled in (a batch's grouped SYNs go before its other packets)."""
        if ts > self.last_ts:
            self.last_ts = ts
        elif ts < self.first_ts:
            self.first_ts = ts
    def add_signature(self, raw_s: str, ittl: int, ttl: int) -> bool:
        """Count a raw signature; False when it was seen before (TTLs already noted then)."""
        sigs = self.sigs
        c = sigs.get(raw_s)
        if c is not None:
            sigs[raw_s] = c + 1
            return False
        if len(sigs) < SIGS_MAX:
            sigs[raw_s] = 1
        self.ittl_bits |= 1 << (ittl & 255)
        self.ttl_bits |= 1 << (ttl & 255)
        return True

    def add_port(self, port: int) -> None:
        ports = self.ports
        if ports is None:
            self.ports = array("H", [port])
        elif len(ports) < PORTS_MAX and port not in ports:
            ports.append(port)

    def add_family(self, role: str, family: str) -> None:
        if self.families is None:
            self.families = {}
        self.families.setdefault(role, set()).add(family)

    def add_app(self, name: str) -> None:
        apps = self.apps
        if apps is None:
            apps = self.apps = {}
        if name in apps or len(apps) < APPS_MAX:
            apps[name] = apps.get(name, 0) + 1

    def add_software(self, text: str, request: bool) -> None:
        """A User-Agent (request) or Server string, cut to TEXT_MAX characters."""
        text = text[:TEXT_MAX]
        lst = self.user_agents if request else self.servers
        if lst is None:
            lst = []
            if request:
                self.user_agents = lst
            else:
                self.servers = lst
        if len(lst) < SOFTWARE_MAX and text not in lst:
            lst.append(text)

    def add_ua_os(self, claimed: str) -> None:
        if self.ua_os is None:
            self.ua_os = []
        if len(self.ua_os) < UA_OS_MAX and claimed not in self.ua_os:
            self.ua_os.append(claimed)

    def add_dishonest(self, finding: str) -> None:
        if self.dishonest is None:
            self.dishonest = []
        finding = finding[:TEXT_MAX]
        if len(self.dishonest) < DISHONEST_MAX and finding not in self.dishonest:
            self.dishonest.append(finding)

    # -- the per-host record ----------------------------------------------------------------------

    def _clock_list(self) -> list[tuple[float, float, float, float, float | None, int]]:
        out = []
        for arr in (self.clocks or {}).values():
            for i in range(0, len(arr), 6):
                c = arr[i:i + 6]
                out.append((c[_T0], c[_V0], c[_TL], c[_VL], c[_HZ] or None, int(c[_N])))
        return out

    def summary(self) -> dict[str, Any]:
        reasons = []
        fams = set((self.families or {}).get("client", set()))
        if len(fams) > 1:
            reasons.append("os_sig: several OS families from one address: " + ", ".join(sorted(fams)))
        ittls = _bits(self.ittl_bits)
        if len(ittls) > 1:
            reasons.append(f"ttl: initial TTLs {ittls}")
        else:
            ts = _bits(self.ttl_bits)
            if ts and ts[-1] - ts[0] > SMALL_TTL_CHG and len(fams) > 1:
                reasons.append(f"ttl: TTLs {ts}")
        confirmed = [c for c in self._clock_list() if c[4] is not None and c[5] >= 2]
        if len(confirmed) > 1:
            reasons.append(f"tstamp: {len(confirmed)} independent TCP timestamp clocks")
        ua_os = sorted(self.ua_os or [])
        if len(ua_os) > 1:
            reasons.append("app: User-Agents name several OSes: " + ", ".join(ua_os))
        uptime = None
        if confirmed:
            c = max(confirmed, key=lambda c: c[5])
            hz = c[4]
            assert hz is not None
            up = c[3] / hz
            uptime = {"clock_hz": hz, "uptime_s": round(up), "samples": c[5],
                      "text": f"{int(up // 86400)} days {int(up % 86400 // 3600)} hrs {int(up % 3600 // 60)} min",
                      "modulo_days": round(0xFFFFFFFF / hz / 86400, 1)}
        timestamps = None
        if self.ts_samples:
            timestamps = ("one clock" if len(confirmed) == 1 else f"{len(confirmed)} clocks" if confirmed
                          else "random offset per connection" if self.ts_samples >= 3 else "too few samples")
        has_http = bool(self.apps or self.user_agents or self.servers)
        return {
            "address": self.address, "first_seen": self.first_ts, "last_seen": self.last_ts,
            "observations": dict(self.count), "os": self.best, "labels": dict(self.labels),
            "distance": self.distance, "mtu": self.mtu, "link": self.link,
            "initial_ttls": ittls, "server_ports": sorted(self.ports or ()),
            "signatures": dict(sorted(self.sigs.items(), key=lambda kv: -kv[1])),
            "uptime": uptime, "timestamps": timestamps,
            "http": {"user_agents": sorted(self.user_agents or []), "servers": sorted(self.servers or []),
                     "apps": dict(self.apps or {}), "ua_os": ua_os} if has_http else None,
            "dishonest": list(self.dishonest or []),
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
        if self.clocks is None:
            self.clocks = {}
        arr = self.clocks.get(role)
        if arr is None:
            arr = self.clocks[role] = array("d")
        for i in range(0, len(arr), 6):
            t_last, v_last, hz = arr[i + _TL], arr[i + _VL], arr[i + _HZ]
            dt = ts - t_last
            if dt < TSTAMP_GRACE_S:
                continue
            dv = (tsval - int(v_last)) & 0xFFFFFFFF
            if not hz:
                rate = dv / dt
                if dv < MIN_TICKS or not MIN_TSCALE <= rate <= MAX_TSCALE:
                    continue
                arr[i + _HZ] = round_hz(rate)
            else:
                expect = hz * dt
                if abs(dv - expect) > max(0.1 * expect, MIN_TICKS):
                    continue
            arr[i + _TL], arr[i + _VL] = ts, float(tsval)
            arr[i + _N] += 1
            self.ts_confirmed = True
            return
        if len(arr) < 6 * CLOCKS_MAX:
            arr.extend((ts, float(tsval), ts, float(tsval), 0.0, 1.0))


class HostSpill:
    """Hosts out of a full in-memory table, pickled into SQLite's private temporary database (the
    empty file name: on disk in $SQLITE_TMPDIR/$TMPDIR once it outgrows its page cache, deleted on
    close). `take` brings one back when its address reappears; `drain` hands every host out once,
    in address order."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect("", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("CREATE TABLE h (addr TEXT PRIMARY KEY, k BLOB NOT NULL, st BLOB NOT NULL)")
        self.count = 0

    def put(self, states: Iterable[HostState]) -> None:
        n = 0

        def rows() -> Iterator[tuple[str, bytes, bytes]]:  # one pickle at a time, not half a table's
            nonlocal n
            for h in states:
                n += 1
                yield h.address, _sort_key(h.address), pickle.dumps(h, pickle.HIGHEST_PROTOCOL)

        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT OR REPLACE INTO h VALUES (?, ?, ?)", rows())
        self.conn.execute("COMMIT")
        self.count += n

    def take(self, addr: str) -> HostState | None:
        row = self.conn.execute("SELECT st FROM h WHERE addr = ?", (addr,)).fetchone()
        if row is None:
            return None
        self.conn.execute("DELETE FROM h WHERE addr = ?", (addr,))
        self.count -= 1
        h: HostState = pickle.loads(row[0])
        return h

    def drain(self) -> Iterator[HostState]:
        for (st,) in self.conn.execute("SELECT st FROM h ORDER BY k"):
            yield pickle.loads(st)
        self.close()

    def close(self) -> None:
        self.conn.close()
        self.count = 0


def _sort_key(addr: str) -> bytes:
    v, n = addr_key(addr)
    if v == 9:
        return b"\x09" + str(n).encode()
    return bytes([v]) + int(n).to_bytes(16, "big")


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
