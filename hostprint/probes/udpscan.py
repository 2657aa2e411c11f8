"""UDP port scan (-sU): nmap's states from the answers, under the target's ICMP rate limit.

UDP reply -> open (udp-response); ICMP port unreachable -> closed (port-unreach); other ICMP
unreachables -> filtered; silence, each time a port-unreachable could have been sent -> open|filtered.
The probe's source port is a cookie of (target, port), checked in the reply or in the ICMP error's
quoted header.

**The limiter.** A closed UDP port answers with an ICMP error, and kernels limit those. Linux
(Documentation/networking/ip-sysctl.rst: icmp_ratelimit, icmp_ratemask, icmp_msgs_per_sec,
icmp_msgs_burst) keeps a token bucket *per destination*: icmp_ratelimit = 1000 ms between errors
to one peer after a burst of 6 (XRLIM_BURST_FACTOR), plus a host-wide bucket of icmp_msgs_burst
refilled at icmp_msgs_per_sec. Measured on the lab's 6.18 kernel with defaults: 6 answers to a
burst of 40 probes, then exactly one per second. A probe that meets an empty bucket is dropped
without an answer and without using a token, so silence alone proves nothing.

So silence only counts when the bucket provably had a token ("a fair miss"):
  (b) a later probe of the same tight batch (<= 1 ms later) drew an ICMP error: tokens only grow
      with time and nothing was consumed in between, so the earlier probe met a token too;
  (a) no ICMP error was consumed for longer than the refill interval before the probe (measured
      per target, 1.25 s — above Linux's default — until measured).
Each re-probe batch ends with a "canary", a port already known closed: when the canary answers,
every silent port before it in the batch had its chance. Batches go out when the bucket has
refilled (the interval is measured from the gaps between answered batches), so every token turns
into an answer: a host with 20 closed ports needs 14 refills after its burst of 6, and no more.
A port is open|filtered after `max_retries`-bounded fair misses (2; 3 once a fair miss was later
answered, i.e. the link loses packets). --host-timeout bounds the wait; what it leaves
unconfirmed is reported as open|filtered and said so in a host warning.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.fragment import fragment_frame
from hostprint.engine.frames import build_frame6
from hostprint.engine.ipv6 import IPv6
from hostprint.engine.link import Link, Links, until_quiet
from hostprint.engine.rate import Pacer, Timing
from hostprint.engine.replies import Reply, Want, addr_bytes, cookie_port, port_is_cookie
from hostprint.model import Json
from hostprint.probes.base import PortListScan, Session, port_progress
from hostprint.signatures.udp_payloads import payload_for

FILTER_CODES = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 9: "net-prohibited",
                10: "host-prohibited", 13: "admin-prohibited"}
SALT = 17  # separates the UDP scan's source-port cookies from other probes'

#: Rule (b): an ICMP answer to a probe sent at most this long after a silent one proves the bucket
#: had a token for the silent one too (a refill inside 1 ms is a 1/1000 chance at Linux's 1 s).
SAME_BATCH = 0.001
#: Rule (a) before the refill interval is measured: Linux's default icmp_ratelimit (1000 ms)
#: plus jiffy rounding and leftovers.
ASSUMED_REFILL = 1.25
#: Re-probe batches: ports per batch (the canary comes on top) and the spacing while waiting for
#: a refill whose interval is not known yet.
BATCH_PORTS = 32
FIRST_SPACING = 0.05


@dataclass
class _Batch:
    sent: list[tuple[int, float]]  # (port, monotonic send time), in send order
    done_at: float = 0.0  # answers are waited for until then


@dataclass
class _Target:
    addr: str
    link: Link
    mac: bytes
    pending: dict[int, int] = field(default_factory=dict)  # unresolved port -> fair misses
    last_probe: dict[int, float] = field(default_factory=dict)
    first_sent: float = 0.0
    consumed: list[float] = field(default_factory=list)  # send times of probes that drew an ICMP error
    canary: int | None = None
    loss_seen: bool = False
    batch: _Batch | None = None
    next_at: float = 0.0
    spacing: float = FIRST_SPACING
    size: int = BATCH_PORTS  # ports per batch: doubled while the bucket never runs dry
    noted: bool = False
    gaps: list[float] = field(default_factory=list)  # refill intervals seen
    drained_at: float | None = None  # last ICMP consumption of a batch that emptied the bucket
    first_round: list[tuple[int, float]] = field(default_factory=list)
    round1_icmp: set[int] = field(default_factory=set)  # ports that drew an ICMP error in the first round
    paced: bool = False  # re-probe batches have started
    drained_paced: bool = False  # drained_at is a re-probe batch's (the first round's leaves the burst's leftovers)
    deadline: float | None = None
    unconfirmed: int = 0  # pending ports the time budget left open|filtered

    @property
    def refill(self) -> float | None:
        """The measured refill interval (median of the gaps between answered batches)."""
        return statistics.median(self.gaps[-9:]) if len(self.gaps) >= 2 else None

    def fair_wait(self) -> float:
        """Rule (a)'s wait: above every refill interval seen lately (a low outlier — tokens left
        over from a batch — must never make silence count early)."""
        if len(self.gaps) < 2:
            return ASSUMED_REFILL
        return max(max(self.gaps[-9:]) * 1.1 + 0.01, 0.002)


class UdpScan:
    def __init__(self, targets: list[str], ports: list[int], timing: Timing, *, links: Links | None = None,
                 data_length: int | None = None, source_port: int | None = None, ttl: int = 64,
                 fragment: bool = False, deadline: float | None = None, host_timeout: float | None = None,
                 on_port: Callable[[str, int, str], None] | None = None,
                 note: Callable[[str], None] | None = None, frag_size: int = 8):
        self.targets = targets
        self.ports = sorted(set(ports))
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.data_length = data_length
        self.cookie = Cookie()
        if source_port is not None:
            self.sport_lo = self.sport_hi = source_port
        else:
            self.sport_lo, self.sport_hi = route.probe_port_range()
        self.fixed_sport = source_port
        self.ttl = ttl
        self.fragment = fragment
        self.deadline = deadline  # monotonic time the time budget ends (--host-timeout)
        self.host_timeout = host_timeout  # for the words
        self.on_port = on_port  # (address, port, state) as each port is decided
        self.frag_size = frag_size
        self.note = note
        self.notes_left = 5
        self.result: dict[tuple[str, int], tuple[str, str, int]] = {}
        self.answer_kind: dict[tuple[str, int], str] = {}  # "icmp" | "udp"
        self.answered_at: dict[tuple[str, int], float] = {}
        self.last_reply = 0.0
        self.probes = 0
        self.rtt: list[float] = []
        self.tgts: dict[str, _Target] = {}
        self.ports_set = frozenset(self.ports)
        self.by_raw = {addr_bytes(a): a for a in targets}  # reply peer -> the target as typed (zones kept)

    # ------------------------------------------------------------------ replies

    def sport(self, addr: str, port: int) -> int:
        if self.fixed_sport is not None:
            return self.fixed_sport
        return cookie_port(self.cookie, self.sport_lo, self.sport_hi, addr_bytes(addr), port, SALT)

    def want(self) -> Want:
        valid: Callable[[Reply], bool]
        if self.fixed_sport is not None:  # -g: no cookie to check; the probed port must be one of ours
            ports = self.ports_set
            valid = lambda r: r.their_port in ports  # noqa: E731
        else:
            valid = port_is_cookie(self.cookie, self.sport_lo, self.sport_hi, SALT)
        return Want(peers=frozenset(addr_bytes(a) for a in self.targets), protos=frozenset({P.IPPROTO_UDP}),
                    our_ports=(self.sport_lo, self.sport_hi), valid=valid)

    def _classify(self, r: Reply) -> tuple[str, int, tuple[str, str, int], str] | None:
        """(address, port, (state, reason, ttl), kind) of one reply, None to ignore it. kind is
        "icmp" for an ICMP or ICMPv6 error (it spent one of the target's limiter tokens), else "udp"."""
        addr = self.by_raw.get(r.peer) or r.address
        port = r.their_port or 0
        if r.error is None:
            return addr, port, (model.OPEN, "udp-response", r.ip.ttl), "udp"
        if not r.dest_unreach:
            return None
        if r.port_unreach:
            return addr, port, (model.CLOSED, "port-unreach", r.ip.ttl), "icmp"
        if r.family == 6:
            return addr, port, (model.FILTERED, r.unreach_reason, r.ip.ttl), "icmp"
        return addr, port, (model.FILTERED, FILTER_CODES.get(r.error.code, "unreach"), r.ip.ttl), "icmp"

    #: reasons that make a port the canary (an ICMP error every probe draws while the bucket has a token)
    CANARY_REASONS: frozenset[str] = frozenset({"port-unreach"})

    def _on_reply(self, r: Reply) -> None:
        c = self._classify(r)
        if c is None:
            return
        addr, port, st, kind = c
        key = (addr, port)
        now = time.monotonic()
        tgt = self.tgts.get(addr)
        if kind == "icmp" and key in self.result and self.result[key][0] == model.OPEN:
            st = self.result[key]
        self.last_reply = now
        if tgt is not None and key[1] in tgt.last_probe:
            sent = tgt.last_probe[key[1]]
            if kind == "icmp":
                tgt.consumed.append(sent)
            if 0 < now - sent < 30:
                self.rtt.append(now - sent)
            if key[1] in tgt.pending:
                if tgt.pending.pop(key[1]) > 0:
                    tgt.loss_seen = True  # a fair miss that was answered after all: loss
            if kind == "icmp" and st[1] in self.CANARY_REASONS and tgt.canary is None:
                tgt.canary = key[1]
        first = key not in self.result
        self.result[key] = st
        self.answer_kind[key] = kind
        self.answered_at[key] = now
        if first and self.on_port is not None:
            self.on_port(addr, key[1], st[0])

    # ------------------------------------------------------------------ sending

    def _frames(self, link: Link, mac: bytes, addr: str, port: int) -> list[bytes]:
        """The probe; with -f/--mtu cut into fragments after crafting (engine/fragment.py), as nmap's -f."""
        payload = payload_for(port) if self.data_length is None else bytes(self.data_length)
        sport = self.sport(addr, port)
        if ":" in addr:
            frame = build_frame6(link.eth(mac, P.ETH_P_IPV6),
                                 IPv6(addr_bytes(link.source_for(addr)), addr_bytes(addr), P.IPPROTO_UDP, self.ttl),
                                 P.UDP(sport, port, payload))
        else:
            ipid = (sport ^ port) & 0xFFFF
            frame = P.build_frame(link.eth(mac), P.IPv4(socket.inet_aton(link.src), socket.inet_aton(addr),
                                                        P.IPPROTO_UDP, id=ipid, ttl=self.ttl), P.UDP(sport, port, payload))
        return fragment_frame(frame, self.frag_size) if self.fragment else [frame]

    def _send(self, tgt: _Target, port: int) -> float:
        for fr in self._frames(tgt.link, tgt.mac, tgt.addr, port):
            tgt.link.send(fr)
        now = time.monotonic()
        tgt.last_probe[port] = now
        self.probes += 1
        return now

    def wait_for_answers(self) -> float:
        """How long a batch's answers are waited for: 4 round trips of the slowest answer so far
        (at least 20 ms), the template's initial timeout before any answer."""
        if not self.rtt:
            return min(self.timing.initial_rtt, 1.0)
        return min(max(4 * max(self.rtt[-64:]), 0.02, self.timing.min_rtt / 5), self.timing.max_rtt)

    # ------------------------------------------------------------------ deciding

    def need(self, tgt: _Target) -> int:
        """Fair misses before a port is open|filtered: one retry on a clean link, two once loss
        was seen, never more probes than the template's retransmissions allow."""
        return max(1, min(3 if tgt.loss_seen else 2, self.timing.max_retries + 1))

    def _evaluate(self, tgt: _Target, batch: _Batch) -> None:
        """Count the fair misses of one batch (rules (a) and (b) of the module docstring) and
        schedule the next batch: at once when the bucket did not run dry, at the measured refill
        when it did, probing every `spacing` while the interval is unknown."""
        icmp_times = sorted(t for p, t in batch.sent
                            if self.answer_kind.get((tgt.addr, p)) == "icmp" and self.answered_at[(tgt.addr, p)] >= t)
        wait = tgt.fair_wait()
        consumed = sorted(tgt.consumed)
        for port, t in batch.sent:
            if port not in tgt.pending:
                continue
            k = bisect.bisect_right(icmp_times, t)  # the first ICMP-answered probe sent after this one
            fair = k < len(icmp_times) and icmp_times[k] <= t + SAME_BATCH
            if not fair:
                j = bisect.bisect_left(consumed, t)  # the last token consumed before this probe
                last = consumed[j - 1] if j else tgt.first_sent
                fair = t - last >= wait
            if fair:
                tgt.pending[port] += 1
        need = self.need(tgt)
        for port in [p for p, n in tgt.pending.items() if n >= need]:
            del tgt.pending[port]
            self.result[(tgt.addr, port)] = (model.OPEN_FILTERED, "no-response", 0)
            if self.on_port is not None:
                self.on_port(tgt.addr, port, model.OPEN_FILTERED)
        now = time.monotonic()
        if not icmp_times:
            # Nothing came back: an empty bucket (or only silent ports). Wait for the refill.
            r = tgt.refill
            tgt.next_at = now + tgt.spacing
            if r is not None and tgt.drained_at is not None:
                tgt.next_at = max(tgt.next_at, tgt.drained_at + 0.95 * r)
                tgt.spacing = max(r / 20, 0.005)
            else:
                tgt.spacing = min(tgt.spacing * 1.25, 0.1)
            if tgt.canary is None:  # no canary: only rule (a) can prove silence; go when it does
                last = consumed[-1] if consumed else tgt.first_sent
                tgt.next_at = max(tgt.next_at, last + wait)
            return
        last_sent = batch.sent[-1][1]
        drained = any(t > icmp_times[-1] for p, t in batch.sent if (tgt.addr, p) not in self.answered_at
                      or self.answered_at[(tgt.addr, p)] < t)
        if tgt.drained_at is not None and tgt.drained_paced and icmp_times[0] > tgt.drained_at:
            tgt.gaps.append(icmp_times[0] - tgt.drained_at)
        if drained:
            tgt.size = max(tgt.size // 2, BATCH_PORTS)
            tgt.drained_at = icmp_times[-1]
            tgt.drained_paced = tgt.paced
            r = tgt.refill
            tgt.spacing = FIRST_SPACING if r is None else max(r / 20, 0.005)
            tgt.next_at = now + tgt.spacing if r is None else max(now, icmp_times[-1] + 0.95 * r)
        else:
            tgt.drained_at = None  # tokens were left: the limiter is not what slows us
            tgt.next_at = max(now, last_sent)
            tgt.size = min(tgt.size * 2, 1024)
        self._maybe_note(tgt)

    def _maybe_note(self, tgt: _Target) -> None:
        """Say once per target (a few targets at most) when the limiter makes the wait long."""
        r = tgt.refill
        if tgt.noted or r is None or self.note is None or self.notes_left <= 0:
            return
        left = len(tgt.pending) * r
        if left < 20:
            return
        tgt.noted = True
        self.notes_left -= 1
        budget = ("" if tgt.deadline is None
                  else f" (--host-timeout ends it in {max(tgt.deadline - time.monotonic(), 0):.0f} s)")
        self.note(f"{tgt.addr} sends 1 ICMP port-unreachable per {r:.2f} s: confirming its {len(tgt.pending)} silent "
                  f"UDP ports takes ~{_duration(left)}{budget}")

    def _batch(self, tgt: _Target) -> list[int]:
        """Ports for the next batch: the most-missed first (a later answer proves their silence),
        then the least recently probed; the canary last."""
        def key(p: int) -> tuple[int, float]:
            return -tgt.pending[p], tgt.last_probe.get(p, 0.0)

        if tgt.canary is None:
            return sorted(tgt.pending, key=key)
        ports = heapq.nsmallest(tgt.size, tgt.pending, key=key)
        if tgt.canary is not None and tgt.canary not in tgt.pending:
            ports.append(tgt.canary)
        return ports

    # ------------------------------------------------------------------ the scan

    async def run(self) -> dict[tuple[str, int], tuple[str, str, int]]:
        for a in self.targets:
            r = route.lookup_any(a)
            link = self.links.for_route(r)
            mac = await link.resolve(r.gateway or a)
            if mac is not None:
                self.tgts[a] = _Target(a, link, mac, pending={p: 0 for p in self.ports})
        links = {id(t.link): t.link for t in self.tgts.values()}
        want = self.want()
        tokens = [link.listen(want, self._on_reply) for link in links.values()]
        pacer = Pacer(min(self.timing.rate, 50_000), burst=256)
        start = time.monotonic()
        for tgt in self.tgts.values():
            tgt.first_sent = start
            tgt.deadline = self.deadline
        try:
            # Round 1: every port of every target, ports interleaved across targets.
            first: dict[str, list[tuple[int, float]]] = {a: [] for a in self.tgts}
            for port in self.ports:
                for tgt in self.tgts.values():
                    await pacer.budget(1)
                    first[tgt.addr].append((port, self._send(tgt, port)))
            await until_quiet(list(links.values()), lambda: max(self.wait_for_answers(), 0.05),
                              lambda: self.last_reply)
            for tgt in self.tgts.values():
                tgt.first_round = first[tgt.addr]
                tgt.round1_icmp = {p for p, _t in tgt.first_round if self.answer_kind.get((tgt.addr, p)) == "icmp"}
                self._evaluate(tgt, _Batch(first[tgt.addr]))
            await self._reprobe(pacer, list(links.values()))
        finally:
            for link, token in zip(links.values(), tokens):
                link.unlisten(token)
            if self.own_links:
                self.links.close()
        return self.result

    async def _reprobe(self, pacer: Pacer, links: list[Link]) -> None:
        """Batches per target until every port is decided or the time budget runs out."""
        while True:
            active = [t for t in self.tgts.values() if t.pending]
            if not active:
                return
            now = time.monotonic()
            for tgt in active:
                if tgt.deadline is not None and now >= tgt.deadline:
                    self._give_up(tgt)
                    continue
                b = tgt.batch
                if b is not None:
                    if now >= b.done_at:
                        tgt.batch = None
                        self._evaluate(tgt, b)
                    continue
                if now >= tgt.next_at:
                    tgt.paced = True
                    sent = []
                    for port in self._batch(tgt):
                        await pacer.budget(1)
                        sent.append((port, self._send(tgt, port)))
                    tgt.batch = _Batch(sent, time.monotonic() + self.wait_for_answers())
            for link in links:
                link.poll()
            wake = [t.batch.done_at if t.batch else t.next_at for t in self.tgts.values() if t.pending]
            if wake:
                await asyncio.sleep(min(max(min(wake) - time.monotonic(), 0.0005), 0.02))

    def _give_up(self, tgt: _Target) -> None:
        tgt.unconfirmed = len(tgt.pending)
        for port in tgt.pending:
            self.result[(tgt.addr, port)] = (model.OPEN_FILTERED, "no-response", 0)
            if self.on_port is not None:
                self.on_port(tgt.addr, port, model.OPEN_FILTERED)
        tgt.pending.clear()
        tgt.batch = None

    # ------------------------------------------------------------------ results

    def results(self, addr: str) -> list[model.PortResult]:
        out = []
        for port in self.ports:
            st = self.result.get((addr, port))
            if st is None:
                out.append(model.PortResult(port, "udp", model.OPEN_FILTERED, "no-response"))
            else:
                out.append(model.PortResult(port, "udp", st[0], st[1], st[2] or None))
        return out

    def decided(self, addr: str) -> list[model.PortResult]:
        """The ports (protocols, for -sO) decided so far, for a scan stopped half-way: answered, or
        silent through every confirmation this scan asks of a silent port."""
        return [r for r in self.results(addr) if (addr, r.port) in self.result]

    def limiter(self, addr: str) -> dict[str, Json] | None:
        """What was learnt about the target's ICMP error limiter (None: it never held us back).
        A first-round probe that went unanswered but drew an ICMP error later met an empty
        bucket; the ICMP answers to probes sent before it are the burst."""
        tgt = self.tgts.get(addr)
        if tgt is None:
            return None
        refused = [t for p, t in tgt.first_round
                   if p not in tgt.round1_icmp and self.answer_kind.get((addr, p)) == "icmp"]
        if not refused:
            return None
        first_refusal = min(refused)
        burst = sum(1 for p, t in tgt.first_round if t < first_refusal and self.answer_kind.get((addr, p)) == "icmp")
        r = tgt.refill
        return {"burst": burst, "interval_s": round(r, 4) if r is not None else None, "unconfirmed": tgt.unconfirmed}

    def warning(self, addr: str) -> str | None:
        """One line for a host whose silent ports the time budget left unconfirmed."""
        tgt = self.tgts.get(addr)
        if tgt is None or not tgt.unconfirmed:
            return None
        return (f"{tgt.unconfirmed} UDP {'port' if tgt.unconfirmed == 1 else 'ports'} not confirmed within "
                f"--host-timeout {self.host_timeout or 0:g}s: {limit_words(self.limiter(addr))}; "
                "reported as open|filtered (closed ports may be among them)")


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def limit_words(lim: dict[str, Json] | None) -> str:
    """'ICMP port-unreachable limit: burst 6, then 1 per 1.00 s' from UdpScan.limiter()."""
    if not lim:
        return "ICMP port-unreachable answers were rate-limited"
    parts = []
    if isinstance(lim.get("burst"), int):
        parts.append(f"burst {lim['burst']}")
    iv = lim.get("interval_s")
    if isinstance(iv, (int, float)):
        parts.append(f"then 1 per {iv:.2f} s")
    return "ICMP port-unreachable limit" + (": " + ", ".join(parts) if parts else "")


class UdpPortScan(PortListScan):
    """-sU through the contract of probes/base.py."""

    name = "udp"
    label = "UDP scan"
    protocol, kind = "udp", "udp"

    async def probe(self, hosts, session: Session):  # type: ignore[no-untyped-def,override]
        addrs = [h.address for h in hosts]
        task = session.progress.phase(self.label, len(addrs) * len(self.ports))
        o = self.options
        on_port = port_progress(session, task, "udp")
        us = self._scan = UdpScan(addrs, self.ports, session.timing, links=session.links, data_length=o.data_length or None,
                     source_port=o.source_port, ttl=o.ttl or 64, fragment=o.fragment, deadline=session.deadline,
                     host_timeout=session.host_timeout,
                     on_port=on_port,
                     note=session.progress.note, frag_size=o.frag_size)
        await us.run()
        session.progress.finish(task)
        limits = {a: lim for a in addrs if (lim := us.limiter(a)) is not None}
        session.stats[self.name] = {"probes": us.probes, "icmp_limit": limits}  # type: ignore[dict-item]
        self.warnings = {a: w for a in addrs if (w := us.warning(a)) is not None}
        return {a: us.results(a) for a in addrs}

    async def scan(self, addrs: list[str], session: Session) -> tuple[dict[str, list[model.PortResult]], dict[str, Json]]:
        raise NotImplementedError  # probe() above does the work

    def record(self, host: model.HostResult, result: list[model.PortResult]) -> None:
        host.ports.extend(result)
        w = getattr(self, "warnings", {}).get(host.address)
        if w:
            host.warnings.append(w)

    _scan: UdpScan | None = None  # the scan in progress (partial() reads it)

    def partial(self) -> dict[str, list[model.PortResult]]:
        us = self._scan
        return {} if us is None else {a: us.decided(a) for a in us.targets}
