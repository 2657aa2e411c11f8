"""Live Cron-OS timing tests: SYN_RCVD (`s`), LAST_ACK (`l`) and FIN_WAIT1 (`f`).

Why crafted packets and not sockets: the schedule we measure is the *target's* retransmission
timer, so nothing on our side may disturb it — a kernel client would retransmit its own SYN/FIN
(each duplicate makes the server answer at once and resets its back-off, reference notes §1.4) and
would ACK what we want retransmitted. Every test is a tiny user-space TCP client on a `Link`; the
RST guard keeps our kernel from resetting the connections it knows nothing about.

Times: arrivals are kernel receive timestamps (AF_PACKET ring, CLOCK_REALTIME). Our send time is
`time.time_ns()` taken right before the frame is handed to the TX socket (no kernel TX timestamp:
the Link's TX path has none; the gap to the wire is a few µs on veth, far below the targets' timer
granularity of ≥ 4 ms — notes §5.5). The handshake RTT (Connect=) is first SYN-ACK − SYN send.

One event loop runs every test of every target: a test is a coroutine that sleeps until its next
decision point, and one frame handler per link dispatches replies by (target, port, our port).
A semaphore per target bounds its open half-connections (default 8: `slf` on two ports at once;
a busy Linux listener trims its SYN-ACK retries when its SYN queue is half full of old requests,
reference notes §3.2, so we must not be the load that changes the schedule we measure).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Handler, Link, Links
from hostprint.engine.replies import addr_bytes, addr_key
from hostprint.errors import UsageError
from hostprint.match.timing import TimingClassifier
from hostprint.match.timing_report import TestResult, host_report, timing_evidence  # noqa: F401 - re-exported
from hostprint.model import CLOSED, FILTERED, OPEN, HostResult, PortResult
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions
from hostprint.signatures.timing_db import TimingDB

if TYPE_CHECKING:
    from hostprint.engine.rstguard import RstGuard

TEST_LETTERS = {"s": "syn", "l": "lastack", "f": "finwait"}
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 240.0
#: Per-service trigger for FIN_WAIT1: a request after which the server answers and closes.
#: HTTP/1.0 without keep-alive makes nginx (and any HTTP/1.0 server) send the page and close.
DEFAULT_TRIGGER = b"GET / HTTP/1.0\r\n\r\n"
TRIGGERS = {6379: b"QUIT\r\n", 21: b"QUIT\r\n",  # redis, ftp: answer "+OK" / "221" and close
            22: b"SSH-1.5-hostprint\r\n"}  # sshd: "Protocol major versions differ." and close
#: Our own resend of an unacknowledged FIN / request (never of the SYN of the `s` test).
OWN_RTO = 1.0
OWN_TRIES = 3


def parse_tests(spec: str) -> list[str]:
    """'slf' -> ['syn', 'lastack', 'finwait']; a bad letter is a UsageError naming it."""
    out = []
    for ch in spec or "":
        if ch not in TEST_LETTERS:
            raise UsageError(f"bad timing test {ch!r} in {spec!r}: use s (SYN_RCVD), l (LAST_ACK), f (FIN_WAIT1)")
        if TEST_LETTERS[ch] not in out:
            out.append(TEST_LETTERS[ch])
    if not out:
        raise UsageError(f"bad timing tests {spec!r}: give at least one of s, l, f")
    return out


def check_timeout(v: float) -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and 1 <= v <= MAX_TIMEOUT):
        raise UsageError(f"bad --cron-timeout {v!r}: use 1-{MAX_TIMEOUT:g} seconds")
    return float(v)


class StopRule:
    """When listening longer cannot change what a test shows (the early stop).

    Rule (documented, deliberately simple): a class is still *waiting* if it has a schedule for this
    test with more packets (a final RST counts) than we saw and its first gaps agree with ours (each
    within its range widened by 25 % and 0.3 s). Its next packet is due within the next gap's upper
    bound — but no later than 2.5x the last gap we saw (retransmission timers double or stay flat)
    unless the class's lower bound for that gap says so. The test ends once every waiting class's
    next packet is overdue by 15 % + 1 s, and so is a generic next packet (2.5x the last gap, or
    3 s after a single packet) that keeps stacks outside the DB from being cut short. A final RST ends a test at once. With no arrival yet, the
    latest second packet of any class is awaited (the first SYN-ACK may have been lost). A
    retransmission lost in the network can end a test one packet early; the classifier treats the
    missing tail as loss, which costs confidence, not the verdict.
    """

    def __init__(self, db: TimingDB):
        self.db = db

    def deadline(self, test: str, arrivals: list[float], rtt_us: float | None) -> float:
        k = len(arrivals)
        gaps = np.diff(np.asarray(arrivals, dtype=float)) if k > 1 else np.zeros(0)
        latest: float | None = None
        for c in self.db.classes:
            for s in c.schedules_for(test):
                s = s.scaled(rtt_us)
                if s.n <= k:
                    continue
                m = len(gaps)
                if m and np.any((gaps < s.gap_lo[:m] * 0.75 - 0.3) | (gaps > s.gap_hi[:m] * 1.25 + 0.3)):
                    continue
                if k == 0:
                    wait = float(s.pos_hi[1] if s.n > 1 else s.pos_hi[0])
                elif k == 1:
                    wait = float(s.gap_hi[0])
                else:
                    lo, hi = float(s.gap_lo[k - 1]), float(s.gap_hi[k - 1])
                    wait = min(hi, max(2.5 * float(gaps[-1]), lo * 1.25))
                due = (arrivals[-1] if k else 0.0) + wait * 1.15 + 1.0
                latest = due if latest is None else max(latest, due)
        # whatever the DB says, a stack it does not know gets one more gap: 2.5x the last one, or
        # after a single packet the 3 s initial RTO of RFC 2988 stacks (RFC 6298 §2.1)
        generic = (arrivals[-1] if k else 0.0) + (2.5 * float(gaps[-1]) if len(gaps) else 3.0) * 1.15 + 1.0
        return generic if latest is None else max(latest, generic)


class _Conn:
    """One test's user-space TCP client."""

    def __init__(self, prober: "TimingProber", link: Link, mac: bytes, res: TestResult, trigger: bytes):
        self.p, self.link, self.mac, self.res = prober, link, mac, res
        self.dst = addr_bytes(res.address)
        self.isn = prober.cookie(addr_key(prober.cookie, self.dst), res.port, res.sport, 0x7a11)
        self.trigger = trigger
        self.srv_isn: int | None = None
        self.head: int | None = None  # finwait: sequence number of the server's first data byte
        self.rcv_next = 0  # what we acknowledge (lastack: data before the FIN)
        self.our_next = (self.isn + 1) & 0xFFFFFFFF
        self.acked_ours = False  # server acknowledged our FIN / request
        self.ts_recent = 0
        self.t_syn = 0
        self.t0 = 0  # time of our probe (ns)
        self.phase = "syn"  # syn -> measure
        self.event = asyncio.Event()
        self.synack_ts: list[int] = []

    # -- sending ------------------------------------------------------------------------------

    def _send(self, flags: int, seq: int, ack: int, payload: bytes = b"", syn_opts: bool = False) -> int:
        tsval = int(time.monotonic() * 1000) & 0xFFFFFFFF
        opts: list[P.TCPOption]
        if syn_opts:
            opts = [(P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (tsval, 0)), (P.OPT_NOP, None),
                    (P.OPT_WS, 7)]
        else:
            opts = [(P.OPT_NOP, None), (P.OPT_NOP, None), (P.OPT_TS, (tsval, self.ts_recent))]
        tcp = P.TCP(self.res.sport, self.res.port, seq, ack, flags, 64240 if syn_opts else 502,
                    options=opts, payload=payload)
        frame = self.link.frame(self.res.address, self.mac, tcp, P.IPPROTO_TCP, ipid=(seq ^ tsval) & 0xFFFF, df=True)
        now = time.time_ns()
        self.link.send(frame)
        return now

    def send_syn(self) -> int:
        return self._send(P.SYN, self.isn, 0, syn_opts=True)

    def send_rst(self) -> None:
        self._send(P.RST, self.our_next, 0)

    # -- receiving ----------------------------------------------------------------------------

    def on_segment(self, ts: int, ip: Any, t: P.TCP) -> None:
        """One segment of the connection (`ip`: IPv4, or IPv6, which is never fragmented on the
        way and counts as DF set, so the timing classes' DF feature reads the same)."""
        r = self.res
        tsopt = t.timestamps
        if tsopt:
            self.ts_recent = tsopt[0]
        if t.flags & P.RST:
            if self.phase == "syn" and not self.synack_ts:
                r.status, r.stopped = "closed", "closed"
            else:
                r.rst = (ts - self.t0) / 1e9
                r.rst_ack = 1 if t.flags & P.ACK else 0
                r.rst_win = t.window
                r.rst_nonzero = 1 if t.ack else 0
            self.event.set()
            return
        if t.flags & P.SYN and t.flags & P.ACK:
            if t.ack != (self.isn + 1) & 0xFFFFFFFF:
                return
            if not self.synack_ts:
                self.srv_isn = t.seq
                self.rcv_next = (t.seq + 1) & 0xFFFFFFFF
                r.rtt_us = max((ts - self.t_syn) / 1e3, 0.0)
                r.window, r.ttl, r.df = t.window, ip.ttl, int(getattr(ip, "df", True))
                r.options, r.mss = P.options_layout(t.options), t.mss
            self.synack_ts.append(ts)
            if self.phase == "measure":  # our ACK of the handshake was lost: say it again
                self._send(P.ACK, self.our_next, self.rcv_next)
            if r.test == "syn":
                r.arrivals.append((ts - self.t0) / 1e9)
            self.event.set()
            return
        if self.phase != "measure" or self.srv_isn is None:
            return
        if t.flags & P.ACK and ((t.ack - self.our_next) & 0xFFFFFFFF) < 1 << 31:
            self.acked_ours = True
        fin = bool(t.flags & P.FIN)
        if r.test == "lastack":
            if fin:
                if r.seg_ttl is None:
                    r.seg_ttl = ip.ttl
                r.arrivals.append((ts - self.t0) / 1e9)
                self.event.set()
            elif t.payload:  # data before the close (a banner): acknowledge it, we want only the FIN
                end = (t.seq + len(t.payload)) & 0xFFFFFFFF
                if ((end - self.rcv_next) & 0xFFFFFFFF) < 1 << 30:
                    self.rcv_next = end
                self._send(P.ACK, self.our_next, self.rcv_next)
        elif r.test == "finwait" and (t.payload or fin):
            if self.head is None:
                self.head, r.seg_ttl = t.seq, ip.ttl
            if t.seq == self.head:  # first transmission and every retransmission of the head
                r.arrivals.append((ts - self.t0) / 1e9)
                self.event.set()

    # -- the test -----------------------------------------------------------------------------

    async def _wait(self, until_ns: int) -> None:
        self.event.clear()
        delay = (until_ns - time.time_ns()) / 1e9
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(self.event.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def run(self) -> None:
        r = self.res
        self.t_syn = self.send_syn()
        if r.test == "syn":
            self.t0 = self.t_syn
        else:
            for attempt in range(OWN_TRIES):
                end = self.t_syn + int(OWN_RTO * 1e9)
                while not self.synack_ts and r.status != "closed" and time.time_ns() < end:
                    await self._wait(end)
                if self.synack_ts or r.status == "closed":
                    break
                self.t_syn = self.send_syn()
            if r.status == "closed":
                return
            if not self.synack_ts:
                r.status, r.stopped = "no-handshake", "timeout"
                return
            seq = self.our_next
            self._send(P.ACK, seq, self.rcv_next)
            self.phase = "measure"
            await self._send_probe()
        await self._listen()
        if r.rst is None and r.status != "closed":
            self.send_rst()  # free the target's state (harmless after a silent give-up)

    async def _send_probe(self) -> None:
        """LAST_ACK: our FIN; FIN_WAIT1: the request. Resent until the server acknowledges it."""
        r = self.res
        for attempt in range(OWN_TRIES):
            if r.test == "lastack":
                self.t0 = self._send(P.FIN | P.ACK, (self.isn + 1) & 0xFFFFFFFF, self.rcv_next)
                self.our_next = (self.isn + 2) & 0xFFFFFFFF
            else:
                self.t0 = self._send(P.PSH | P.ACK, (self.isn + 1) & 0xFFFFFFFF, self.rcv_next, self.trigger)
                self.our_next = (self.isn + 1 + len(self.trigger)) & 0xFFFFFFFF
            end = self.t0 + int(OWN_RTO * 1e9)
            while not self.acked_ours and not r.arrivals and r.rst is None and time.time_ns() < end:
                await self._wait(end)
            if self.acked_ours or r.arrivals or r.rst is not None:
                return

    async def _listen(self) -> None:
        r = self.res
        hard_end = self.t0 + int(self.p.timeout * 1e9)
        while True:
            if r.status == "closed":
                return
            if r.rst is not None:
                r.stopped = "rst"
                break
            now = time.time_ns()
            if now >= hard_end:
                r.stopped = "timeout"
                break
            if self.p.full:
                until = hard_end
            else:
                dl = self.p.stop_rule.deadline(r.test, r.arrivals, r.rtt_us)
                until = min(hard_end, self.t0 + int(dl * 1e9))
                if now >= until:
                    r.stopped = "early"
                    break
            await self._wait(until)
        r.listened = (time.time_ns() - self.t0) / 1e9
        if r.status == "pending":
            if r.test != "syn" and not r.arrivals and r.rst is not None:
                r.status = "reset"  # the connection was refused after the handshake (e.g. a SYN proxy)
            elif r.arrivals or r.rst is not None:
                r.status = "ok"
            else:
                r.status = "no-response" if r.test == "syn" else "no-close"


class TimingProber:
    """Runs timing tests against many (address, port) pairs at once."""

    def __init__(self, db: TimingDB, *, timeout: float = DEFAULT_TIMEOUT, full: bool = False,
                 per_target: int = 8, links: Links | None = None):
        self.db = db
        self.timeout = check_timeout(timeout)
        self.full = full
        self.per_target = max(1, per_target)
        self.links = links
        self.cookie = Cookie()
        self.stop_rule = StopRule(db)
        self.conns: dict[tuple[bytes, int, int], _Conn] = {}
        self._handlers: dict[int, Handler] = {}  # id(link) -> our frame handler on it
        self.results: list[TestResult] = []  # the running jobs' results, filled as packets arrive
        lo, hi = route.probe_port_range()
        # start at a random offset so two runs against one target do not reuse a port that is
        # still in the target's TIME_WAIT / LAST_ACK from the previous run
        self._ports = (lo, hi)
        self._next = lo + (os.getpid() * 7919 + int(time.time())) % (hi - lo + 1)

    def _sport(self) -> int:
        lo, hi = self._ports
        p = self._next
        self._next = lo if self._next >= hi else self._next + 1
        return p

    def _handler_for(self, link: Link) -> Handler:
        def on_frame(ts: int, fr: memoryview) -> None:
            ip: Any
            if len(fr) >= 74 and fr[12] == 0x86 and fr[13] == 0xDD:  # IPv6
                from hostprint.engine.frames import decode_ip6_packet

                try:
                    ip, l4 = decode_ip6_packet(fr, 14)
                except P.DecodeError:
                    return
                t = l4 if isinstance(l4, P.TCP) else None
            else:
                if len(fr) < 54 or fr[12] != 0x08 or fr[13] != 0x00 or fr[23] != 6:
                    return
                try:
                    p = P.decode_frame(fr)
                except P.DecodeError:
                    return
                t, ip = p.tcp, p.ip
            if t is None or ip is None:
                return
            c = self.conns.get((ip.src, t.sport, t.dport))
            if c is not None:
                try:
                    c.on_segment(ts, ip, t)
                except Exception:  # noqa: BLE001 - one odd segment must not stop the ring for all tests
                    pass
        return on_frame

    async def run(self, jobs: Iterable[tuple[str, int, str]], guard: RstGuard | None = None) -> list[TestResult]:
        """jobs = (address, port, test); returns one TestResult per job, in order."""
        from hostprint.engine.rstguard import RstGuard

        jobs = list(jobs)
        own_links = self.links is None
        links = self.links or Links()
        own_guard = guard is None
        lo, hi = self._ports
        results = self.results = [TestResult(test, a, port, self._sport()) for a, port, test in jobs]
        sems: dict[str, asyncio.Semaphore] = {}
        try:
            by_addr: dict[str, tuple[Link, bytes | None]] = {}
            ifaces = sorted({route.lookup_any(a).iface for a, _, _ in jobs})
            if guard is None:  # own_guard
                guard = RstGuard(lo, hi, ifaces=ifaces)
                guard.install()
            guard.guard(*sorted({a for a, _, _ in jobs}))
            for a in dict.fromkeys(a for a, _, _ in jobs):
                r = route.lookup_any(a)
                link = links.for_route(r)
                if id(link) not in self._handlers:
                    self._handlers[id(link)] = link.subscribe(self._handler_for(link))
                by_addr[a] = (link, None)
            macs = await asyncio.gather(*[by_addr[a][0].resolve(route.lookup_any(a).gateway or a) for a in by_addr])
            for a, m in zip(list(by_addr), macs):
                by_addr[a] = (by_addr[a][0], m)

            async def one(res: TestResult) -> None:
                link, mac = by_addr[res.address]
                if mac is None:
                    res.status, res.stopped = "no-response", "no-arp"
                    return
                sem = sems.setdefault(res.address, asyncio.Semaphore(self.per_target))
                async with sem:
                    trig = TRIGGERS.get(res.port, DEFAULT_TRIGGER)
                    c = _Conn(self, link, mac, res, trig)
                    key = (c.dst, res.port, res.sport)
                    self.conns[key] = c
                    try:
                        await c.run()
                    finally:
                        # keep draining a moment: late duplicates must not hit a reused port
                        self.conns.pop(key, None)
                        if res.status == "pending" and c.t0:  # stopped (Ctrl-C) while listening
                            res.listened = (time.time_ns() - c.t0) / 1e9

            await asyncio.gather(*[one(r) for r in results])
            return results
        finally:
            for link in list(links.by_iface.values()):
                h = self._handlers.pop(id(link), None)
                if h is not None:
                    link.unsubscribe(h)
            if own_guard and guard is not None:
                guard.remove()
            if own_links:
                links.close()


    def partial(self) -> list[TestResult]:
        """For a run stopped half-way: every job's result as far as it got. A test stopped while it
        listened keeps what arrived, cut where it stopped (`stopped` "interrupted"; the classifier
        takes the packets after `listened` as unseen, not lost); one that had seen nothing is
        "interrupted". Copies: the running jobs' results are not changed."""
        out = []
        for r in self.results:
            if r.status == "pending":
                seen = bool(r.arrivals) or r.rst is not None
                r = replace(r, arrivals=list(r.arrivals), status="ok" if seen else "interrupted", stopped="interrupted")
            out.append(r)
        return out


async def fingerprint_hosts(targets: dict[str, list[int]], tests: list[str], db: TimingDB, *,
                            timeout: float = DEFAULT_TIMEOUT, full: bool = False,
                            links: Links | None = None,
                            prober: TimingProber | None = None) -> tuple[dict[str, list[TestResult]], TimingProber]:
    """Run `tests` on every (address, port) and group the results by address (`prober`: one made
    by the caller, who can then read its partial results)."""
    prober = prober or TimingProber(db, timeout=timeout, full=full, links=links)
    jobs = [(a, p, t) for a, ports in targets.items() for p in ports for t in tests]
    res = await prober.run(jobs)
    by: dict[str, list[TestResult]] = {a: [] for a in targets}
    for r in res:
        by[r.address].append(r)
    return by, prober


def _port_result(port: int, res: list[TestResult]) -> PortResult:
    """What the tests saw of a port, in scan terms (a SYN-ACK = open, an RST to the SYN = closed)."""
    if any(r.rtt_us is not None for r in res):
        return PortResult(port, "tcp", OPEN, "syn-ack")
    if any(r.status == "closed" for r in res):
        return PortResult(port, "tcp", CLOSED, "reset")
    return PortResult(port, "tcp", FILTERED, "no-response")


# ---------------------------------------------------------------------------------------------
# The technique (probes/base.py): --cron-os in `scan`, and `hostprint timing`
# ---------------------------------------------------------------------------------------------

#: ports whose server closes promptly on our FIN / request first (TRIGGERS above)
PREFERRED_TIMING_PORTS = (80, 8080, 8000, 6379, 21, 22)


class TimingTechnique(Technique[list[TestResult]]):
    name = "timing"
    phase = 40
    label = "timing tests"

    def __init__(self, options: ScanOptions):
        from hostprint.signatures.timing_db import resolve_timing_db

        self.tests = parse_tests(options.cron_os or "")
        check_timeout(options.cron_timeout)
        self.timeout = options.cron_timeout
        self.db = resolve_timing_db(options.timing_db, options.timing_db_mapping)  # fails before any packet
        self.db_name = self.db.name if self.db.kind != "hostprint" else "hostprint"
        self.clf = TimingClassifier(self.db)
        self.ports = options.timing_ports
        self.full = options.timing_full

    @classmethod
    def create(cls, options: ScanOptions) -> list[TimingTechnique]:
        return [cls(options)] if options.cron_os else []

    def _targets(self, hosts: Sequence[HostResult]) -> dict[str, list[int]]:
        if self.ports is not None:
            return {h.address: self.ports[h.address] for h in hosts if self.ports.get(h.address)}
        pref = {p: i for i, p in enumerate(PREFERRED_TIMING_PORTS)}
        out = {}
        for h in hosts:
            open_ports = [p.port for p in h.ports if p.state == OPEN and p.protocol == "tcp"]
            if open_ports:
                out[h.address] = sorted(open_ports, key=lambda p: (pref.get(p, len(pref)), p))[:1]
        return out

    async def probe(self, hosts: Sequence[HostResult], session: Session) -> dict[str, list[TestResult]]:
        targets = self._targets(hosts)
        if not targets:
            return {}
        task = session.progress.phase(self.label, sum(len(p) for p in targets.values()) * len(self.tests))
        t0 = time.time()
        self._prober = TimingProber(self.db, timeout=self.timeout, full=self.full, links=session.links)
        by, _ = await fingerprint_hosts(targets, self.tests, self.db, prober=self._prober)
        session.progress.advance(task, sum(len(r) for r in by.values()))
        session.stats["timing"] = {"elapsed": round(time.time() - t0, 3),
                                   "tests": sum(len(p) for p in targets.values()) * len(self.tests)}
        return by

    def record(self, host: HostResult, result: list[TestResult]) -> None:
        """The timing evidence; with the ports given (`hostprint timing`, where the tests are the
        only probes) also the host's status, RTT and what the tests saw of each port."""
        block, found, fingerprint = timing_evidence(self.clf, result, self.db_name)
        host.os.add(block, architecture=found, fingerprint=fingerprint)
        if self.ports is None:
            return
        def heard(r: TestResult) -> bool:
            return r.rtt_us is not None or r.status not in ("no-response", "interrupted")

        host.status = "up" if any(heard(r) for r in result) else "unknown"
        host.reasons = ["timing"]
        rtts = [r.rtt_us for r in result if r.rtt_us is not None]
        host.rtt_us = min(rtts) if rtts else None
        by_port = {p: [r for r in result if r.port == p] for p in self.ports.get(host.address, [])}
        # a port whose tests a stop cut short before any answer is left out: nothing was decided
        host.set_ports([_port_result(p, rs) for p, rs in by_port.items()
                        if not rs or any(heard(r) or r.status != "interrupted" for r in rs)])

    _prober: TimingProber | None = None  # the tests in progress (partial() reads them)

    def partial(self) -> dict[str, list[TestResult]]:
        out: dict[str, list[TestResult]] = {}
        for r in self._prober.partial() if self._prober is not None else []:
            out.setdefault(r.address, []).append(r)
        return out
