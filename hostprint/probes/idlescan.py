"""Idle scan (-sI ZOMBIE[:PORT]) and zombie rating (`hostprint zombies`).

The scan that sends no packet from the scanner's address to the target (Antirez 1998; nmap's
idle_scan.cc): a zombie whose IP ID is one counter for every packet it sends betrays how many
packets it sent between two of our readings.

- **Reading the counter**: a SYN/ACK from us to ZOMBIE:PORT draws a RST (RFC 9293 3.10.7.1: a
  segment acknowledging nothing is answered by reset, sequence number = its ACK). The RST's
  sequence number echoes our keyed cookie (engine/replies.seq_is_cookie); its IP ID is the reading.
- **Probing a port**: SYNs with the zombie's address as source go to the target. An open port
  answers the zombie with SYN/ACK and the zombie resets it (one IP ID used); a closed port's RST
  and a filtered port's silence use none. So between two readings the counter moves by 1 (our
  reading) + the open ports among the ones probed + the zombie's other traffic.
- **Rating a zombie** (stackfacts.ip_id_class over several readings): usable only with an
  incremental class (I; BI = the same counter written little-endian), a step of about one per
  reading (little background traffic), and a counter that also counts packets to *other*
  addresses (a spoofed SYN/ACK "from" another address must move it: Linux keeps per-destination
  counters and sends RSTs with ID 0, so it is never a zombie). A bad zombie is refused with the reason.
- **Group testing**: ports go in groups; a group whose reading moved by exactly one has no open
  port; a group that moved more is halved until single ports remain. Background traffic can fake
  a move, so a single port is tested until the likelihood ratio of "open" against "closed" (moves
  as Poisson background at the measured rate, plus one for an open port) passes 1000:1 or 1:100:
  two tests on an idle zombie, more on a busy one.
  Tests are pipelined: reading, SYNs to group 1, reading, SYNs to group 2, reading … (each
  reading ends one test and starts the next), spaced by the time a SYN-ACK needs to reach the
  zombie, so a round of tests costs that spacing per group, not a round trip per group.
States and reasons are nmap's: open (ipid-change), closed|filtered (no-ipid-change).
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Link, Links
from hostprint.engine.replies import Reply, Want, seq_is_cookie
from hostprint.errors import UsageError
from hostprint.model import Json
from hostprint.probes.base import Session, Technique, port_progress
from hostprint.probes.options import ScanOptions
from hostprint.stackfacts import ip_id_class, ip_id_words

SALT = 41
#: readings taken to rate a zombie, and their spacing (nmap's idle scan takes 6)
RATE_READINGS, RATE_SPACING = 6, 0.05
#: spoofed SYN/ACKs of the global-counter test
SPOOF_TEST = 4
#: background traffic (IP IDs per second the zombie spends on others) above which it is refused
TOO_BUSY = 100.0
#: first group size; groups are halved when they move the counter
GROUP = 16
#: spacing between a group's SYNs and the next reading: enough for the target's SYN/ACK to
#: reach the zombie (lab: well under 1 ms); at least this, or twice the zombie's round trip
MIN_SPACING = 0.005
#: after the first spoofed SYN to a target: time for it to resolve the zombie's address
WARM_UP = 1.0
#: single-port decisions: open when the evidence is 1000:1, closed|filtered at 1:100 (a port that
#: shows nothing once is closed unless it showed something before); at most MAX_TESTS tests
DECIDE_OPEN, DECIDE_CLOSED, MAX_TESTS = math.log(1000), math.log(0.01), 9
#: background assumed at least this (IDs/s: a rating may miss rare traffic) and the chance that an
#: open port's SYN/ACK or the zombie's RST is lost
BG_FLOOR, LOSS = 1.0, 0.01


def _swap(x: int) -> int:
    return ((x & 0xFF) << 8) | (x >> 8)


@dataclass
class ZombieRating:
    """What the readings say about one candidate zombie (`hostprint zombies`, -sI's check)."""

    address: str
    port: int
    ids: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    ip_id_class: str | None = None
    swapped: bool = False  # BI: the counter is written little-endian
    step: float | None = None  # mean IP ID step between two of our readings
    background_per_s: float | None = None  # IDs per second spent on packets that are not our RSTs
    global_counter: bool | None = None  # None: not tested
    global_detail: str = ""
    rtt: float | None = None
    usable: bool = False
    reason: str = ""

    @property
    def activity(self) -> str:
        b = self.background_per_s
        if b is None:
            return "unknown"
        return "idle" if b < 1 else "light" if b < 10 else "busy" if b < TOO_BUSY else "too busy"

    def to_dict(self) -> dict[str, Json]:
        return {"address": self.address, "port": self.port, "usable": self.usable, "reason": self.reason,
                "ip_id_class": self.ip_id_class, "ip_id_words": ip_id_words(self.ip_id_class) if self.ids else None,
                "byte_swapped": self.swapped, "global_counter": self.global_counter,
                "global_detail": self.global_detail or None, "activity": self.activity,
                "background_per_s": None if self.background_per_s is None else round(self.background_per_s, 2),
                "step": None if self.step is None else round(self.step, 3),
                "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3), "ip_ids": list(self.ids)}


class ZombieReader:
    """Reads one zombie's IP ID: a SYN/ACK from our address to ZOMBIE:PORT, the RST's IP ID."""

    def __init__(self, link: Link, mac: bytes, addr: str, port: int, cookie: Cookie):
        self.link, self.mac, self.addr, self.port, self.cookie = link, mac, addr, port, cookie
        self.lo, self.hi = route.probe_port_range()
        self.next_sport = self.lo
        self.sent: dict[int, float] = {}  # sport -> monotonic send time
        self.got: dict[int, tuple[float, int]] = {}  # sport -> (monotonic receive time, IP ID)
        self.probes = 0
        self.token = link.listen(Want(peers=frozenset({socket.inet_aton(addr)}), protos=frozenset({P.IPPROTO_TCP}),
                                      our_ports=(self.lo, self.hi), errors=False,
                                      valid=seq_is_cookie(cookie, SALT)), self._on_reply)
        self.waiters: dict[int, asyncio.Future[tuple[float, int]]] = {}

    def _on_reply(self, r: Reply) -> None:
        t = r.tcp
        ip = r.ip
        if (t is None or not t.flags & P.RST or r.our_port is None or r.our_port in self.got
                or not isinstance(ip, P.IPv4)):  # IPv6 has no IP ID to read
            return
        now = time.monotonic()
        self.got[r.our_port] = (now, ip.id)
        fut = self.waiters.pop(r.our_port, None)
        if fut is not None and not fut.done():
            fut.set_result((now, ip.id))

    def send(self) -> int:
        """Send one reading probe now; its source port identifies the answer."""
        sport = self.next_sport
        self.next_sport = self.lo + (self.next_sport - self.lo + 1) % (self.hi - self.lo + 1)
        self.got.pop(sport, None)
        src, dst = socket.inet_aton(self.link.src), socket.inet_aton(self.addr)
        ack = self.cookie(int.from_bytes(dst, "big"), self.port, sport, SALT)
        tcp = P.TCP(sport, self.port, self.cookie(int.from_bytes(dst, "big"), sport, self.port, SALT ^ 0x77), ack,
                    P.SYN | P.ACK, 1024)
        self.link.send(P.build_frame(self.link.eth(self.mac), P.IPv4(src, dst, id=sport & 0xFFFF), tcp))
        self.sent[sport] = time.monotonic()
        self.probes += 1
        return sport

    async def wait(self, sports: Sequence[int], timeout: float) -> dict[int, tuple[float, int]]:
        """The answers to these probes that came within `timeout`."""
        loop = asyncio.get_running_loop()
        futs = []
        for s in sports:
            if s not in self.got:
                fut = self.waiters.get(s)
                if fut is None:
                    fut = self.waiters[s] = loop.create_future()
                futs.append(fut)
        if futs:
            await asyncio.wait(futs, timeout=timeout)
        for s in sports:
            self.waiters.pop(s, None)
        return {s: self.got[s] for s in sports if s in self.got}

    async def read(self, timeout: float = 1.0) -> tuple[float, int] | None:
        s = self.send()
        got = await self.wait([s], timeout)
        return got.get(s)

    def close(self) -> None:
        self.link.unlisten(self.token)


def spoofed_frame(link: Link, mac: bytes, src: str, dst: str, sport: int, dport: int, flags: int, seq: int,
                  ack: int = 0) -> bytes:
    """A TCP segment from `src` (not our address: only ever a lab address in tests) to `dst`."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = P.TCP(sport, dport, seq, ack, flags, 1024, options=[(P.OPT_MSS, 1460)] if flags == P.SYN else [])
    return P.build_frame(link.eth(mac), P.IPv4(s, d, id=(seq >> 16) & 0xFFFF), tcp)


async def rate_zombie(links: Links, addr: str, port: int = 80, *, spoof_from: str | None = None,
                      cookie: Cookie | None = None, readings: int = RATE_READINGS) -> ZombieRating:
    """Read the zombie's IP ID `readings` times and, with `spoof_from`, test that its counter
    also counts the RSTs it sends to that address (spoofed SYN/ACKs from it)."""
    link, mac = await links.toward(addr)
    if mac is None:
        return ZombieRating(addr, port, reason="no ARP answer")
    rd = ZombieReader(link, mac, addr, port, cookie or Cookie())
    try:
        z = await _rate_with(rd, addr, port, readings)
        if z.usable and spoof_from is not None:
            await _spoof_test(z, rd, link, mac, spoof_from)
    finally:
        rd.close()
    return z


def _classify(z: ZombieRating, readings: int) -> None:
    if len(z.ids) < 2:
        z.reason = f"no RST to a SYN/ACK on port {z.port}" if not z.ids else "answered only one of the readings"
        return
    cls = ip_id_class(z.ids)
    if cls == "BI":
        z.swapped = True
        cls = ip_id_class([_swap(i) for i in z.ids])
        z.ip_id_class = "BI"
    else:
        z.ip_id_class = cls
    ids = [_swap(i) for i in z.ids] if z.swapped else z.ids
    steps = [(b - a) & 0xFFFF for a, b in zip(ids, ids[1:])]
    elapsed = z.times[-1] - z.times[0]
    z.step = sum(steps) / len(steps)
    z.background_per_s = max(sum(steps) - len(steps), 0) / elapsed if elapsed > 0 else None
    if len(z.ids) < readings:
        z.reason = f"answered {len(z.ids)} of {readings} readings (loss would fake open ports)"
    elif cls != "I":
        # a busy global counter classifies as no class (steps >= 10): say it is busy, not random
        if cls is None and max(steps) < 1000 and z.background_per_s is not None:
            z.reason = f"IP ID incremental but busy: {z.background_per_s:.0f} IDs/s from other traffic"
        else:
            z.reason = f"IP ID sequence is {ip_id_words(z.ip_id_class)} ({z.ip_id_class}), not one incremental counter"
    elif z.background_per_s is not None and z.background_per_s >= TOO_BUSY:
        z.reason = f"too busy: {z.background_per_s:.0f} IDs/s from other traffic"
    else:
        z.usable = True
        z.reason = f"incremental IP ID, {z.activity} ({z.background_per_s or 0:.1f} IDs/s from other traffic)"


async def _spoof_test(z: ZombieRating, rd: ZombieReader, link: Link, mac: bytes, spoof_from: str) -> None:
    """Spoofed SYN/ACKs from `spoof_from` to the zombie: a global counter moves by one per RST the
    zombie sends back to that address; a per-destination one does not move for us at all. nmap's
    idle scan does the same test with the target as the spoofed source."""
    before = await rd.read()
    if before is None:
        z.usable = False
        z.reason = "stopped answering the readings"
        return
    base = rd.lo + 2048  # ports unlike the readings'
    for i in range(SPOOF_TEST):
        link.send(spoofed_frame(link, mac, spoof_from, z.address, base + i, z.port, P.SYN | P.ACK,
                                rd.cookie(i, base, z.port, SALT ^ 0x33), rd.cookie(i, z.port, base, SALT ^ 0x34)))
    # the zombie may first have to resolve the other address (ARP): read until the count settles
    reads, extra, after = 0, 0, before
    for wait in (0.02, 0.1, 0.3, 1.0):
        await asyncio.sleep(wait)
        got = await rd.read()
        reads += 1
        if got is None:
            continue
        after = got
        extra = _step(before[1], got[1], z.swapped) - reads
        if extra >= SPOOF_TEST:
            break
    bg = (z.background_per_s or 0) * (after[0] - before[0])
    z.global_counter = extra >= SPOOF_TEST - 1
    z.global_detail = (f"{SPOOF_TEST} RSTs to {spoof_from} moved the counter by {extra}"
                       + (f" (about {bg:.1f} expected from background traffic)" if bg >= 0.5 else ""))
    if not z.global_counter:
        z.usable = False
        z.reason = (f"its IP ID did not count the {SPOOF_TEST} RSTs it sent to {spoof_from} (moved {extra}): "
                    "a per-destination counter, or spoofed packets are filtered on the way")


def _step(a: int, b: int, swapped: bool) -> int:
    if swapped:
        a, b = _swap(a), _swap(b)
    return (b - a) & 0xFFFF


# ---------------------------------------------------------------------------- the scan


@dataclass
class _Test:
    ports: list[int]
    opens: int | None = None  # counter moves beyond our reading; None: a reading was lost
    window: float = 0.0  # seconds between the two readings' answers


def _pois(k: int, mu: float) -> float:
    return math.exp(-mu) * mu ** k / math.factorial(k) if k >= 0 else 0.0


def _llr(k: int, mu: float) -> float:
    """log P(k | one open port) - log P(k | none) for a single port whose test moved the counter
    by k beyond our reading, the background contributing Poisson(mu) and an open port's SYN/ACK
    or RST being lost with probability LOSS."""
    closed = _pois(k, mu)
    opened = (1 - LOSS) * _pois(k - 1, mu) + LOSS * closed
    return math.log(max(opened, 1e-300)) - math.log(max(closed, 1e-300))


class IdleScan:
    """One zombie, targets one after another (they share the zombie's counter)."""

    def __init__(self, zombie: str, zport: int, targets: list[str], ports: list[int], timing: Any, *,
                 links: Links | None = None, on_port: Callable[[str, int, str], None] | None = None,
                 note: Callable[[str], None] | None = None, deadline: float | None = None):
        self.zombie, self.zport = zombie, zport
        self.targets, self.ports = targets, sorted(set(ports))
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.on_port, self.note, self.deadline = on_port, note, deadline
        self.cookie = Cookie()
        self.rating: ZombieRating | None = None
        self.result: dict[tuple[str, int], str] = {}
        self.spoofed = 0
        self.tests = 0
        self.rounds = 0
        self.spacing = MIN_SPACING
        self.unconfirmed: dict[str, int] = {}
        self.per_target: dict[str, dict[str, Json]] = {}
        self.sport_lo, self.sport_hi = route.probe_port_range()

    @property
    def probes(self) -> int:
        return self.spoofed + (self._reader.probes if getattr(self, "_reader", None) else 0)

    async def run(self) -> dict[tuple[str, int], str]:
        try:
            zlink, zmac = await self.links.toward(self.zombie)
            if zmac is None:
                raise UsageError(f"-sI {self.zombie}: the zombie does not answer ARP; nothing was scanned")
            self._reader = ZombieReader(zlink, zmac, self.zombie, self.zport, self.cookie)
            for addr in self.targets:
                await self._target(addr)
        finally:
            if getattr(self, "_reader", None) is not None:
                self._reader.close()
            if self.own_links:
                self.links.close()
        return self.result

    async def _target(self, addr: str) -> None:
        rd = self._reader
        link, mac = await self.links.toward(addr)
        if mac is None:
            return
        z = await _rate_with(rd, self.zombie, self.zport)
        if z.usable:
            await _spoof_test(z, rd, rd.link, rd.mac, addr)
        self.rating = z
        if not z.usable:
            raise UsageError(f"-sI {self.zombie}:{self.zport}: not a usable zombie: {z.reason}; nothing was scanned "
                             f"through it (rate candidates with `hostprint zombies`)")
        if self.note is not None:
            self.note(f"Idle scan of {addr} using zombie {self.zombie}:{self.zport}: {z.reason}; {z.global_detail}")
        start_readings, start_spoofed = self._reader.probes, self.spoofed
        self.spacing = max(MIN_SPACING, 2 * (z.rtt or 0))
        self.swapped = z.swapped
        # The target may first have to resolve the zombie's address (ARP; a proxy-ARP answer waits
        # up to proxy_delay, 0.8 s on Linux): one spoofed SYN, then time for its answer to arrive.
        sp = self.sport_lo + self.cookie(P.ip_to_int(addr), 0, 0, SALT) % (self.sport_hi - self.sport_lo + 1)
        link.send(spoofed_frame(link, mac, self.zombie, addr, sp, self.ports[0], P.SYN,
                                self.cookie(P.ip_to_int(addr), 0, sp, SALT ^ 0x11)))
        self.spoofed += 1
        await asyncio.sleep(WARM_UP)
        # background: IDs the zombie spends on others, counted over (time, IDs) windows known to
        # hold no open port; starts from the rating, floored at BG_FLOOR
        self.bg_ids, self.bg_time = max(z.background_per_s or 0.0, BG_FLOOR) * 1.0, 1.0
        evidence: dict[int, float] = {}  # single port -> log likelihood ratio open : closed|filtered
        tested: dict[int, int] = {}
        watch: list[_Test] = []  # tests whose ports are not all decided yet
        queue: list[list[int]] = [self.ports[i:i + GROUP] for i in range(0, len(self.ports), GROUP)]
        while queue:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                left = {p for g in queue for p in g}
                self.unconfirmed[addr] = len(left)
                break
            tests = [_Test(g) for g in queue]
            queue = []
            await self._round(link, mac, addr, tests)
            for t in tests:
                if t.opens is None or t.opens < 0:
                    queue.append(t.ports)  # a reading was lost (or the counter went back): test again
                    continue
                if len(t.ports) == 1:
                    p = t.ports[0]
                    evidence[p] = evidence.get(p, 0.0) + _llr(t.opens, self.background() * t.window)
                    tested[p] = tested.get(p, 0) + 1
                    if evidence[p] >= DECIDE_OPEN or (tested[p] >= MAX_TESTS and evidence[p] > 0):
                        self._decide(addr, p, True)
                    elif evidence[p] <= DECIDE_CLOSED or tested[p] >= MAX_TESTS:
                        self._decide(addr, p, False)
                    else:
                        queue.append([p])
                elif t.opens == 0:
                    for p in t.ports:
                        self._decide(addr, p, False)
                else:
                    half = len(t.ports) // 2
                    queue += [t.ports[:half], t.ports[half:]]
            watch += [t for t in tests if t.opens is not None and t.opens >= 0]
            watch = self._learn_background(addr, watch)
        for p in self.ports:
            self.result.setdefault((addr, p), model.CLOSED_FILTERED)
        readings, spoofed = self._reader.probes - start_readings, self.spoofed - start_spoofed
        self.per_target[addr] = {"ports": len(self.ports), "readings": readings, "spoofed_syns": spoofed,
                                 "ports_per_reading": round(len(self.ports) / readings, 2) if readings else None,
                                 "ports_per_packet": round(len(self.ports) / (readings + spoofed), 3)
                                 if readings + spoofed else None}
        if self.note is not None:
            self.note(f"Idle scan of {addr}: {len(self.ports)} ports in {readings} zombie readings and {spoofed} "
                      f"spoofed SYNs ({len(self.ports) / max(readings, 1):.1f} ports per reading)")

    def _learn_background(self, addr: str, tests: list[_Test]) -> list[_Test]:
        """Tests whose ports are all decided tell how much of their move was background."""
        left = []
        for t in tests:
            states = [self.result.get((addr, p)) for p in t.ports]
            if any(s is None for s in states):
                left.append(t)
                continue
            self.bg_ids += max((t.opens or 0) - states.count(model.OPEN), 0)
            self.bg_time += t.window
        return left

    def background(self) -> float:
        """The zombie's background rate (IDs/s) as measured so far."""
        return max(self.bg_ids / self.bg_time, BG_FLOOR)

    def _decide(self, addr: str, port: int, opened: bool) -> None:
        state = model.OPEN if opened else model.CLOSED_FILTERED
        self.result[(addr, port)] = state
        if self.on_port is not None:
            self.on_port(addr, port, state)

    async def _round(self, link: Link, mac: bytes, addr: str, tests: list[_Test]) -> None:
        """reading, SYNs to group 1, reading, SYNs to group 2, … reading; then the answers."""
        rd = self._reader
        self.rounds += 1
        sports = [rd.send()]
        for t in tests:
            for p in t.ports:
                sp = self.sport_lo + self.cookie(P.ip_to_int(addr), p, self.spoofed, SALT) % (self.sport_hi - self.sport_lo + 1)
                link.send(spoofed_frame(link, mac, self.zombie, addr, sp, p, P.SYN,
                                        self.cookie(P.ip_to_int(addr), p, sp, SALT ^ 0x11)))
                self.spoofed += 1
            await asyncio.sleep(self.spacing)
            sports.append(rd.send())
            self.tests += 1
        got = await rd.wait(sports, timeout=max(0.5, 10 * (self.rating.rtt if self.rating and self.rating.rtt else 0)))
        for i, t in enumerate(tests):
            a, b = got.get(sports[i]), got.get(sports[i + 1])
            if a is None or b is None:
                continue
            t.opens = _step(a[1], b[1], self.swapped) - 1
            t.window = max(b[0] - a[0], 0.0)

    def results(self, addr: str) -> list[model.PortResult]:
        return [model.PortResult(p, "tcp", st, "ipid-change" if st == model.OPEN else "no-ipid-change")
                for p in self.ports if (st := self.result.get((addr, p))) is not None]


async def _rate_with(rd: ZombieReader, addr: str, port: int, readings: int = RATE_READINGS) -> ZombieRating:
    z = ZombieRating(addr, port)
    rtts = []
    for i in range(readings):
        s = rd.send()
        got = (await rd.wait([s], 1.0 if i == 0 else 0.5)).get(s)
        if got is not None:
            z.times.append(got[0])
            z.ids.append(got[1])
            rtts.append(got[0] - rd.sent[s])
        await asyncio.sleep(RATE_SPACING)
    z.rtt = min(rtts) if rtts else None
    _classify(z, readings)
    return z


class IdleTechnique(Technique[list[model.PortResult]]):
    """-sI through the contract of probes/base.py: TCP port results, open or closed|filtered."""

    name = "idle"
    label = "Idle scan"
    phase = 10

    def __init__(self, options: ScanOptions):
        self.options = options
        self.ports = options.ports.get("tcp", [])
        self.stats: dict[str, Json] = {}

    @classmethod
    def create(cls, options: ScanOptions) -> Sequence[Technique[Any]]:
        if "idle" not in options.scan_kinds or not options.zombie or not options.ports.get("tcp"):
            return []
        return [cls(options)]

    async def probe(self, hosts: Sequence[model.HostResult], session: Session) -> Mapping[str, list[model.PortResult]]:
        addrs = [h.address for h in hosts if h.address != self.options.zombie]
        task = session.progress.phase(self.label, len(addrs) * len(self.ports))
        on_port = port_progress(session, task, "tcp")
        assert self.options.zombie is not None
        scan = IdleScan(self.options.zombie, self.options.zombie_port, addrs, self.ports, session.timing,
                        links=session.links, on_port=on_port, note=session.progress.note, deadline=session.deadline)
        try:
            await scan.run()
        finally:
            session.progress.finish(task)
        z = scan.rating
        probes = scan.probes
        decided = len(scan.result)
        session.stats[self.name] = {
            "zombie": z.to_dict() if z else None, "spoofed_syns": scan.spoofed,
            "zombie_readings": probes - scan.spoofed, "tests": scan.tests, "rounds": scan.rounds,
            "ports_per_packet": round(decided / probes, 3) if probes else None,
            "targets": dict(scan.per_target), "unconfirmed": dict(scan.unconfirmed)}  # type: ignore[dict-item]
        self.unconfirmed = scan.unconfirmed
        return {a: scan.results(a) for a in addrs}

    def record(self, host: model.HostResult, result: list[model.PortResult]) -> None:
        host.ports.extend(result)
        n = getattr(self, "unconfirmed", {}).get(host.address)
        if n:
            host.warnings.append(f"{n} TCP ports not tested through the zombie within --host-timeout; "
                                 "reported as closed|filtered")
