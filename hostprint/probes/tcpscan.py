"""Raw TCP port scans: SYN (-sS), SYN+ACK (-sSA), ACK (-sA), window (-sW), FIN (-sF), NULL (-sN),
Xmas (-sX).

Stateless: each probe's sequence (or acknowledgement) number is a keyed cookie of (target, port,
source port), so replies are validated by recomputing it; results live in one uint8 state matrix
(targets x ports). Rounds: send every probe paced, wait until the link is quiet for the RTT
timeout, then resend what got no answer. On a clean link one silent retry decides; once a retry
has been answered (evidence of loss, not filtering) the rate is halved and three silent rounds in a
row are needed before the rest is called filtered (or open|filtered), as nmap defines the states.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import FastCookie
from hostprint.engine.craft import TcpTemplate
from hostprint.engine.link import Link, Links
from hostprint.engine.rate import Pacer, Timing

# Reply codes in the state matrix
NONE, SYNACK, RST, RST_WIN, ICMP_BASE = 0, 1, 2, 3, 16

ICMP_REASONS = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}


@dataclass(frozen=True)
class ScanKind:
    """How one scan type builds its probe and reads the answers (nmap's definitions)."""

    name: str  # nmap's scaninfo type
    flags: int
    cookie_in_ack: bool  # the reply echoes our ack as its seq (ACK-bearing probes)
    ack_delta: int  # reply.ack == cookie + delta for seq-cookie probes
    on_synack: str
    on_rst: str
    on_silence: str
    on_icmp: str = model.FILTERED
    options: tuple = ((P.OPT_MSS, 1460),)
    on_rst_window: str | None = None  # window scan: RST with a non-zero window


KINDS = {
    "syn": ScanKind("syn", P.SYN, False, 1, model.OPEN, model.CLOSED, model.FILTERED),
    "synack": ScanKind("syn", P.SYN | P.ACK, True, 0, model.UNFILTERED, model.UNFILTERED, model.FILTERED),
    "ack": ScanKind("ack", P.ACK, True, 0, model.UNFILTERED, model.UNFILTERED, model.FILTERED, options=()),
    "window": ScanKind("window", P.ACK, True, 0, model.CLOSED, model.CLOSED, model.FILTERED, options=(),
                       on_rst_window=model.OPEN),
    "fin": ScanKind("fin", P.FIN, False, 1, model.OPEN_FILTERED, model.CLOSED, model.OPEN_FILTERED, options=()),
    "null": ScanKind("null", 0, False, 0, model.OPEN_FILTERED, model.CLOSED, model.OPEN_FILTERED, options=()),
    "xmas": ScanKind("xmas", P.FIN | P.PSH | P.URG, False, 1, model.OPEN_FILTERED, model.CLOSED,
                     model.OPEN_FILTERED, options=()),
}

_IPH = struct.Struct("!BBHHHBBHII")
_TCPH = struct.Struct("!HHIIBBH")


@dataclass
class TargetState:
    address: str
    addr: int
    link: Link
    mac: bytes
    hkey: int
    state: np.ndarray  # uint8 per port
    ttl: np.ndarray  # uint8 per port
    rtt_us: float | None = None
    window: dict[int, int] = field(default_factory=dict)  # open port -> SYN-ACK window (for -O later)


@dataclass
class ScanStats:
    probes: int = 0
    replies: int = 0
    rounds: int = 0
    retransmitted: int = 0
    final_rate: float = 0.0
    elapsed: float = 0.0
    ring_drops: int = 0


class TcpScan:
    def __init__(self, kind: str, targets: list[str], ports: list[int], timing: Timing, *,
                 links: Links | None = None, data_length: int = 0, sport_range: tuple[int, int] | None = None,
                 progress: Callable[[int, int], None] | None = None, ttl: int = 64):
        self.kind = KINDS[kind]
        self.targets = targets
        self.ports = np.asarray(sorted(set(ports)), dtype=np.int64)
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.payload = bytes(data_length)
        self.sport_lo, self.sport_hi = sport_range or route.probe_port_range()
        self.nsport = self.sport_hi - self.sport_lo + 1
        self.progress = progress
        self.ttl = ttl
        self.cookie = FastCookie(salt=hash(kind) & 0xFFFF)
        self.pos = np.full(65536, -1, dtype=np.int64)
        self.pos[self.ports] = np.arange(len(self.ports))
        self.pos_list = self.pos.tolist()
        self.stats = ScanStats()
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.last_reply = 0.0
        self.sent_at_ns = 0
        self.states: list[TargetState] = []
        self.by_addr: dict[int, TargetState] = {}

    # ------------------------------------------------------------------ setup

    async def _prepare(self) -> list[TargetState]:
        tab = route.table()
        out = []
        for a in self.targets:
            r = tab.lookup(a)
            link = self.links.for_route(r)
            hop = r.gateway or a
            mac = await link.resolve(hop)
            addr = P.ip_to_int(a)
            st = TargetState(a, addr, link, mac or b"", self.cookie.host_key(addr),
                             np.zeros(len(self.ports), np.uint8), np.zeros(len(self.ports), np.uint8))
            if mac is None:  # no ARP answer: the host is not on the link; every port stays silent
                st.mac = b""
            out.append(st)
            self.by_addr[addr] = st
        return out

    # ------------------------------------------------------------------ receive

    def _on_frame(self, ts: int, fr: memoryview) -> None:
        if len(fr) < 34 or fr[12] != 8 or fr[13] != 0:
            return
        vihl, _tos, _tl, _id, _ff, ttl, proto, _c, src, _dst = _IPH.unpack_from(fr, 14)
        t = 14 + (vihl & 15) * 4
        st = self.by_addr.get(src)
        if st is None:
            return
        if proto == 6:
            if len(fr) < t + 16:
                return
            sport, dport, seq, ack, _off, flags, win = _TCPH.unpack_from(fr, t)
            if not self.sport_lo <= dport <= self.sport_hi:
                return
            pi = self.pos_list[sport]
            if pi < 0:
                return
            c = self.cookie.value(st.hkey, sport, dport)
            k = self.kind
            if k.cookie_in_ack:
                if not flags & P.RST or seq != c:
                    return
            elif ack != (c + k.ack_delta) & 0xFFFFFFFF:
                return
            if flags & P.RST:
                code = RST_WIN if (k.on_rst_window and win) else RST
            elif flags & P.SYN and flags & P.ACK:
                code = SYNACK
                st.window[sport] = win
            else:
                return
            if st.state[pi] == NONE:
                self.stats.replies += 1
            st.state[pi] = code
            st.ttl[pi] = ttl
            self._rtt_sample(ts)
        elif proto == 1:
            if len(fr) < t + 8 + 20 + 8 or fr[t] != 3:
                return
            code = fr[t + 1]
            q = t + 8
            qihl = (fr[q] & 15) * 4
            if fr[q + 9] != 6 or len(fr) < q + qihl + 8:
                return
            qdst = struct.unpack_from("!I", fr, q + 16)[0]
            qst = self.by_addr.get(qdst)
            if qst is None:
                return
            sport, dport, seq = struct.unpack_from("!HHI", fr, q + qihl)
            pi = self.pos_list[dport] if 0 <= dport < 65536 else -1
            if pi < 0 or not self.sport_lo <= sport <= self.sport_hi:
                return
            c = self.cookie.value(qst.hkey, dport, sport)
            if not self.kind.cookie_in_ack and seq != c:
                return
            if qst.state[pi] in (NONE,) or qst.state[pi] >= ICMP_BASE:
                if qst.state[pi] == NONE:
                    self.stats.replies += 1
                qst.state[pi] = ICMP_BASE + min(code, 200)
                qst.ttl[pi] = ttl

    def _rtt_sample(self, ts_ns: int) -> None:
        self.last_reply = time.monotonic()
        if self.stats.replies & 15:
            return
        rtt = (ts_ns - self.sent_at_ns) / 1e9
        if rtt <= 0 or rtt > 30:
            return
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:  # RFC 6298 smoothing, as nmap does for its timeouts
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def timeout(self) -> float:
        t = self.timing
        if self.srtt is None:
            return t.initial_rtt
        return min(max(self.srtt + 4 * self.rttvar, t.min_rtt), t.max_rtt)

    # ------------------------------------------------------------------ send

    async def _send_round(self, groups: dict[Link, list[TargetState]], which: dict[int, np.ndarray] | None,
                          pacer: Pacer) -> int:
        """Send one probe to every (target, port) in `which` (target index -> port positions), or
        to all when None. Targets are interleaved port by port so no one host takes the burst."""
        sent = 0
        for link, sts in groups.items():
            tmpl = TcpTemplate(link.mac, link.src, flags=self.kind.flags, options=list(self.kind.options),
                               ttl=self.ttl, payload=self.payload)
            live = [s for s in sts if s.mac]
            if not live:
                continue
            idx = {id(s): i for i, s in enumerate(self.states)}
            if which is None:
                rng = np.random.default_rng()
                perm = rng.permutation(len(self.ports))
                tis = np.tile(np.array([idx[id(s)] for s in live]), len(perm))
                pis = np.repeat(perm, len(live))
            else:
                parts_t, parts_p = [], []
                for s in live:
                    ti = idx[id(s)]
                    if ti in which and len(which[ti]):
                        parts_t.append(np.full(len(which[ti]), ti))
                        parts_p.append(which[ti])
                if not parts_t:
                    continue
                # interleave targets: sort by position within each target's list
                tis = np.concatenate(parts_t)
                pis = np.concatenate(parts_p)
                order = np.argsort(np.concatenate([np.arange(len(p)) for p in parts_p]), kind="stable")
                tis, pis = tis[order], pis[order]
            addrs = np.array([s.addr for s in self.states], dtype=np.uint64)
            hkeys = np.array([s.hkey for s in self.states], dtype=np.uint64)
            macs = np.frombuffer(b"".join(s.mac if s.mac else b"\0" * 6 for s in self.states), np.uint8).reshape(-1, 6)
            total = len(tis)
            pos = 0
            buf = link.sender.buf
            while pos < total:
                n = await pacer.budget(min(total - pos, link.sender.max_batch))
                ti = tis[pos:pos + n]
                pi = pis[pos:pos + n]
                dport = self.ports[pi]
                sport = self.sport_lo + ((pi * 7 + ti) % self.nsport)
                c = self.cookie.batch(hkeys[ti], dport, sport).astype(np.uint64)
                zeros = np.zeros(n, np.uint64)
                if self.kind.cookie_in_ack:
                    seq, ack = zeros, c
                else:
                    seq, ack = c, zeros
                ipid = (c >> np.uint64(7)) & np.uint64(0xFFFF)
                tmpl.fill(buf, macs[ti], addrs[ti], sport, dport, seq, ack, ipid)
                self.sent_at_ns = time.time_ns()
                k = 0
                while k < n:
                    k += link.sender.send(n, tmpl.length, start=k)
                    if k < n:
                        await asyncio.sleep(0.0005)
                        link.poll()
                pos += n
                sent += n
                self.stats.probes += n
                if self.progress:
                    self.progress(n, 0)
                link.poll()
        return sent

    async def _quiet(self, links: list[Link]) -> None:
        """Wait until no reply has arrived for one RTT timeout after the last probe."""
        start = time.monotonic()
        while True:
            for link in links:
                link.poll()
            to = self.timeout()
            now = time.monotonic()
            last = max(self.last_reply, start)
            if now - last >= to and now - start >= to:
                break
            await asyncio.sleep(min(0.005, to / 4))

    async def run(self) -> list[TargetState]:
        t0 = time.monotonic()
        self.states = await self._prepare()
        groups: dict[Link, list[TargetState]] = {}
        for s in self.states:
            groups.setdefault(s.link, []).append(s)
        handler = self._on_frame
        for link in groups:
            link.subscribe(handler)
        pacer = Pacer(self.timing.rate, burst=1024)
        try:
            await self._send_round(groups, None, pacer)
            await self._quiet(list(groups))
            self.stats.rounds = 1
            answered_before = self.stats.replies
            loss_seen = False
            empty_rounds = 0
            rnd = 0
            while True:
                rnd += 1
                # Without loss evidence one silent retry decides "filtered" (as nmap does on a clean
                # link). Once a retransmission has been answered, the link loses packets: a live
                # port lost twice looks filtered, so demand three silent rounds in a row (~0.1 %
                # miss per port at 10 % per-attempt loss) and allow a few rounds past the template.
                limit = self.timing.max_retries + (4 if loss_seen else 0)
                if rnd > limit:
                    break
                which = {i: np.nonzero(s.state == NONE)[0] for i, s in enumerate(self.states) if s.mac}
                pending = sum(len(v) for v in which.values())
                if pending == 0:
                    break
                self.stats.retransmitted += pending
                await self._send_round(groups, which, pacer)
                await self._quiet(list(groups))
                self.stats.rounds += 1
                new = self.stats.replies - answered_before
                answered_before = self.stats.replies
                if new:
                    loss_seen = True
                    empty_rounds = 0
                    if new > 0.02 * pending:
                        pacer.set_rate(pacer.rate / 2)
                else:
                    empty_rounds += 1
                    if empty_rounds >= (3 if loss_seen else 1):
                        break
        finally:
            for link in groups:
                link.unsubscribe(handler)
                try:
                    self.stats.ring_drops += link.ring.stats()[1]
                except OSError:
                    pass
            if self.own_links:
                self.links.close()
        self.stats.final_rate = pacer.rate
        self.stats.elapsed = time.monotonic() - t0
        return self.states

    # ------------------------------------------------------------------ results

    def results(self, st: TargetState) -> list[model.PortResult]:
        k = self.kind
        out = []
        states = st.state
        ttls = st.ttl
        codes, counts = np.unique(states, return_counts=True)
        for code in codes.tolist():
            where = np.nonzero(states == code)[0]
            if code == NONE:
                state, reason = k.on_silence, "no-response"
            elif code == SYNACK:
                state, reason = k.on_synack, "syn-ack"
            elif code == RST:
                state, reason = k.on_rst, "reset"
            elif code == RST_WIN:
                state, reason = k.on_rst_window or k.on_rst, "reset"
            else:
                state, reason = k.on_icmp, ICMP_REASONS.get(code - ICMP_BASE, "unreach")
            for pi in where.tolist():
                out.append(model.PortResult(int(self.ports[pi]), "tcp", state, reason,
                                            int(ttls[pi]) if code != NONE else None))
        return out


def answered(st: TargetState) -> bool:
    return bool(np.any(st.state != NONE))


def guess_distance(ttl: int) -> int:
    """Hops from a reply TTL, assuming the nearest common initial TTL (32, 64, 128, 255)."""
    for init in (32, 64, 128, 255):
        if ttl <= init:
            return init - ttl + 1
    return 0


def addr_str(x: int) -> str:
    return socket.inet_ntoa(x.to_bytes(4, "big"))
