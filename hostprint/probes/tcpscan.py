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
import secrets
import shutil
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hostprint import model
from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import FastCookie
from hostprint.engine.craft import TcpTemplate
from hostprint.engine.fragment import fragment_rows, pieces
from hostprint.engine.link import Link, Links, until_quiet
from hostprint.engine.rate import Pacer, Timing
from hostprint.engine.rstguard import RstGuard
from hostprint.errors import UsageError
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions
from hostprint.probes.tcpscan6 import ICMP6_BASE, ICMP_BASE, NONE, RST, RST_WIN, SYNACK, Tcp6Path, reason6

# Reply codes in the state matrix: NONE, SYNACK, RST, RST_WIN, ICMP_BASE (tcpscan6, shared by both families)

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
    family: int = 4
    raw: bytes = b""  # the address's 4 or 16 bytes
    src: str = ""  # our source address toward it


@dataclass
class ScanStats:
    probes: int = 0
    replies: int = 0
    rounds: int = 0
    retransmitted: int = 0
    final_rate: float = 0.0
    elapsed: float = 0.0
    ring_drops: int = 0


class TcpScan(Tcp6Path):
    def __init__(self, kind: str, targets: list[str], ports: list[int], timing: Timing, *,
                 links: Links | None = None, data_length: int = 0, sport_range: tuple[int, int] | None = None,
                 progress: Callable[[int, int], None] | None = None, ttl: int = 64,
                 on_open: Callable[[str, int], None] | None = None, frag_size: int = 0):
        self.kind = KINDS[kind]
        self.frag_size = frag_size  # -f/--mtu: probes cut into IP fragments of this many bytes (0: whole)
        self.targets = targets
        self.ports = np.asarray(sorted(set(ports)), dtype=np.int64)
        self.timing = timing
        self.links = links or Links()
        self.own_links = links is None
        self.payload = bytes(data_length)
        self.sport_lo, self.sport_hi = sport_range or route.probe_port_range()
        self.nsport = self.sport_hi - self.sport_lo + 1
        # a fresh offset per run: a scan resumed right after Ctrl-C must not reuse the 4-tuples of the
        # interrupted one's half-open connections (the target answers those with an ACK, not a SYN-ACK)
        self.sport_offset = secrets.randbelow(self.nsport)
        self.progress = progress
        self.ttl = ttl
        self.on_open = on_open  # (address, port) the first time a port answers SYN-ACK to a SYN scan
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
        self.guard: RstGuard | None = None

    # ------------------------------------------------------------------ setup

    async def _prepare(self) -> list[TargetState]:
        out = []
        self.state = np.zeros((len(self.targets), len(self.ports)), np.uint8)
        self.ttl_m = np.zeros((len(self.targets), len(self.ports)), np.uint8)
        for ti, a in enumerate(self.targets):
            r = route.lookup_any(a)
            link = self.links.for_route(r)
            hop = r.gateway or a
            mac = await link.resolve(hop)
            family, hkey, raw = self.host_key(a)
            addr = P.ip_to_int(a) if family == 4 else 0
            st = TargetState(a, addr, link, mac or b"", hkey, self.state[ti], self.ttl_m[ti], family=family, raw=raw,
                             src=link.source_for(a))
            if mac is None:  # no ARP/ND answer: the host is not on the link; every port stays silent
                st.mac = b""
            out.append(st)
            if family == 4:
                self.by_addr[addr] = st
        self.states = out
        self._index6()
        out4 = [s for s in out if s.family == 4]
        order = np.argsort(np.array([s.addr for s in out4], np.uint64))
        self.sorted_addr = np.array([out4[i].addr for i in order], np.uint64)
        self.sorted_tidx = np.array([out.index(out4[i]) for i in order], np.int64)
        self.hkeys = np.array([s.hkey for s in out], np.uint64)
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
                if st.state[pi] == NONE and self.on_open is not None and self.kind.on_synack == model.OPEN:
                    self.on_open(st.address, sport)
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

    def _on_block(self, ring: np.ndarray, starts: np.ndarray, lens: np.ndarray, ts: np.ndarray) -> None:
        """The bulk path: a whole ring block of replies validated and recorded with array ops.
        ICMP errors (rare) go through the per-frame path; IPv6 frames through tcpscan6."""
        if self.idx6 is not None:
            v6 = (ring[starts + 12] == 0x86) & (ring[starts + 13] == 0xDD)
            if v6.any():
                self._on_block6(ring, starts[v6], lens[v6], ts[v6])
        ok = lens >= 54
        if not ok.all():
            starts, lens, ts = starts[ok], lens[ok], ts[ok]
        if not len(starts):
            return
        ip = (ring[starts + 12] == 8) & (ring[starts + 13] == 0) & ((ring[starts + 14] >> 4) == 4)
        proto = ring[starts + 23]
        icmp = ip & (proto == 1)
        if icmp.any():
            for a, ln, t in zip(starts[icmp].tolist(), lens[icmp].tolist(), ts[icmp].tolist()):
                self._on_frame(t, memoryview(ring[a: a + ln].tobytes()))
        sel = ip & (proto == 6)
        if not sel.any():
            return
        o = starts[sel]
        ln = lens[sel]
        u32 = np.uint32

        def be16(at: np.ndarray) -> np.ndarray:
            return (ring[at].astype(u32) << 8) | ring[at + 1]

        def be32(at: np.ndarray) -> np.ndarray:
            return (be16(at) << 16) | be16(at + 2)

        src = be32(o + 26).astype(np.uint64)
        t = o + 14 + (ring[o + 14] & 15).astype(np.int64) * 4
        fit = t + 16 <= o + ln
        k = np.searchsorted(self.sorted_addr, src)
        k[k >= len(self.sorted_addr)] = 0
        known = (self.sorted_addr[k] == src) & fit
        if not known.any():
            return
        o, t, k = o[known], t[known], k[known]
        self._record(self.sorted_tidx[k], be16(t), be16(t + 2), be32(t + 4), be32(t + 8), ring[t + 13], be16(t + 14),
                     ring[o + 22], ts[sel][known])

    def _record(self, ti: np.ndarray, sport: np.ndarray, dport: np.ndarray, seq: np.ndarray, ack: np.ndarray,
                flags: np.ndarray, win: np.ndarray, ttl: np.ndarray, ts: np.ndarray) -> None:
        """TCP replies from known targets (`ti`: their rows in the state matrix), one array per header
        field: the cookie check and the state matrix update of the bulk path, for both families'
        block readers (IPv6: tcpscan6)."""
        pi = self.pos[sport]
        good = (pi >= 0) & (dport >= self.sport_lo) & (dport <= self.sport_hi)
        c = self.cookie.batch(self.hkeys[ti], sport, dport)
        kind = self.kind
        rst = (flags & P.RST) != 0
        if kind.cookie_in_ack:
            good &= rst & (seq == c)
        else:
            good &= ack == (c + np.uint32(kind.ack_delta))
        synack = ((flags & (P.SYN | P.ACK)) == (P.SYN | P.ACK)) & ~rst
        good &= rst | synack
        if not good.any():
            return
        ti, pi, rst, synack = ti[good], pi[good], rst[good], synack[good]
        win = win[good]
        code = np.where(rst, RST, SYNACK).astype(np.uint8)
        if kind.on_rst_window is not None:
            code[rst & (win != 0)] = RST_WIN
        before = self.state[ti, pi]
        self.stats.replies += int(np.count_nonzero(before == NONE))
        self.state[ti, pi] = code
        self.ttl_m[ti, pi] = ttl[good]
        if synack.any():
            new = synack & (before == NONE)
            if self.on_open is not None:
                for i, p in zip(ti[new].tolist(), pi[new].tolist()):
                    self.on_open(self.states[i].address, int(self.ports[p]))
            their_ack = ack[good][synack]
            our_port = dport[good][synack]
            for i, p, w, a, op in zip(ti[synack].tolist(), pi[synack].tolist(), win[synack].tolist(),
                                      their_ack.tolist(), our_port.tolist()):
                st = self.states[i]
                st.window[int(self.ports[p])] = w
                if self.guard is not None:
                    self._reset(st, op, int(self.ports[p]), a)
        self._rtt_sample(int(ts[good][-1]), force=True)

    def _reset(self, st: TargetState, our_port: int, port: int, seq: int) -> None:
        """With the guard up our kernel never answers a SYN-ACK, so we reset the half-open
        connection ourselves: the target frees it at once instead of retransmitting for a minute."""
        if st.family == 6:
            return self._reset6(st, our_port, port, seq)
        link = st.link
        frame = P.build_frame(link.eth(st.mac), P.IPv4(socket.inet_aton(link.src), socket.inet_aton(st.address), ttl=self.ttl),
                              P.TCP(our_port, port, seq, 0, P.RST, 0))
        try:
            link.send(frame)
        except OSError:
            pass

    def _rtt_sample(self, ts_ns: int, force: bool = False) -> None:
        self.last_reply = time.monotonic()
        if self.stats.replies & 15 and not force:
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
        idx = {id(s): i for i, s in enumerate(self.states)}
        addrs = np.array([s.addr for s in self.states], dtype=np.uint64)
        hkeys = np.array([s.hkey for s in self.states], dtype=np.uint64)
        macs = np.frombuffer(b"".join(s.mac if s.mac else b"\0" * 6 for s in self.states), np.uint8).reshape(-1, 6)
        for link, all_sts in groups.items():
            by_src: dict[tuple[int, str], list[TargetState]] = {}
            for st in all_sts:  # one template per family and source address
                by_src.setdefault((st.family, st.src), []).append(st)
            for (family, src), sts in by_src.items():
                sent += await self._send_group(link, family, src, sts, which, pacer, idx, addrs, hkeys, macs)
        return sent

    async def _send_group(self, link: Link, family: int, src: str, sts: list[TargetState],
                          which: dict[int, np.ndarray] | None, pacer: Pacer, idx: dict[int, int],
                          addrs: np.ndarray, hkeys: np.ndarray, macs: np.ndarray) -> int:
        sent = 0
        if family == 6:
            tmpl6 = self.template6(link, src, self.payload)
            length = tmpl6.length
        else:
            tmpl = TcpTemplate(link.mac, link.src, flags=self.kind.flags, options=list(self.kind.options),
                               ttl=self.ttl, payload=self.payload)
            length = tmpl.length
        live = [s for s in sts if s.mac]
        if not live:
            return 0
        if which is None:
            rng = np.random.default_rng()
            perm = rng.permutation(len(self.ports))
            tis = np.tile(np.array([idx[id(s)] for s in live]), len(perm))
            pis = np.repeat(perm, len(live))
        else:
            parts_t, parts_p = [], []
            for s in live:
                k = idx[id(s)]
                if k in which and len(which[k]):
                    parts_t.append(np.full(len(which[k]), k))
                    parts_p.append(which[k])
            if not parts_t:
                return 0
            # interleave targets: sort by position within each target's list
            tis = np.concatenate(parts_t)
            pis = np.concatenate(parts_p)
            order = np.argsort(np.concatenate([np.arange(len(p)) for p in parts_p]), kind="stable")
            tis, pis = tis[order], pis[order]
        total = len(tis)
        pos = 0
        loop = asyncio.get_running_loop()
        senders = link.parallel_senders()
        nfrag = pieces(length - (54 if family == 6 else 34), self.frag_size) if self.frag_size else 1
        if nfrag > 1:  # -f: probes are crafted into a scratch buffer, their fragments into the sender's
            scratch = np.zeros((senders[0][0].max_batch // nfrag, senders[0][0].frame_size), np.uint8)
        busy: list[asyncio.Future | None] = [None] * len(senders)
        turn = 0
        while pos < total:
            i = turn % len(senders)
            turn += 1
            sender, pool = senders[i]
            pending = busy[i]
            if pending is not None:  # this sender's buffer is still being sent
                await pending
            n = int(await pacer.budget(min(total - pos, sender.max_batch // nfrag)))
            ti = tis[pos:pos + n]
            pi = pis[pos:pos + n]
            dport = self.ports[pi]
            sport = self.sport_lo + ((pi * 7 + ti + self.sport_offset) % self.nsport)
            c = self.cookie.batch(hkeys[ti], dport, sport).astype(np.uint64)
            zeros = np.zeros(n, np.uint64)
            if self.kind.cookie_in_ack:
                seq, ack = zeros, c
            else:
                seq, ack = c, zeros
            rows = scratch if nfrag > 1 else sender.buf
            if family == 6:
                tmpl6.fill(rows, macs[ti], self.hi6[ti], self.lo6[ti], sport, dport, seq, ack)
            else:
                ipid = (c >> np.uint64(7)) & np.uint64(0xFFFF)
                tmpl.fill(rows, macs[ti], addrs[ti], sport, dport, seq, ack, ipid)
            lengths: int | np.ndarray = length
            k = n
            if nfrag > 1:
                lengths = fragment_rows(scratch, n, length, sender.buf, self.frag_size)
                k = len(lengths)
            self.sent_at_ns = time.time_ns()
            busy[i] = loop.run_in_executor(pool, sender.send_all, k, lengths)
            pos += n
            sent += n
            self.stats.probes += n
            if self.progress and which is None:  # retransmissions are not progress
                self.progress(n, 0)
            link.poll()
        for f in busy:
            if f is not None:
                await f
        return sent

    def _install_guard(self, links: list[Link]) -> RstGuard | None:
        """Replies dropped before our IP stack (and our RSTs sent by us); without nftables the
        scan still works, only our kernel spends more time on replies."""
        if not shutil.which("nft"):
            return None
        try:
            guard = RstGuard(self.sport_lo, self.sport_hi, [link.iface for link in links])
            guard.install()
            guard.guard(*[s.address for s in self.states])
            return guard
        except (UsageError, OSError):
            return None

    async def run(self) -> list[TargetState]:
        t0 = time.monotonic()
        self.states = await self._prepare()
        groups: dict[Link, list[TargetState]] = {}
        for s in self.states:
            groups.setdefault(s.link, []).append(s)
        handler = self._on_block
        for link in groups:
            link.subscribe_blocks(handler)
        self.guard = self._install_guard(list(groups))
        max_batch = max(link.sender.max_batch for link in groups) if groups else 1024
        pacer = Pacer(self.timing.rate, burst=max_batch)
        try:
            await self._send_round(groups, None, pacer)
            await until_quiet(list(groups), self.timeout, lambda: self.last_reply)
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
                await until_quiet(list(groups), self.timeout, lambda: self.last_reply)
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
            if self.guard is not None:
                self.guard.remove()
            for link in groups:
                link.unsubscribe_blocks(handler)
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

    def results(self, st: TargetState, fold_over: int | None = None, *, answered_only: bool = False
                ) -> tuple[list[model.PortResult], list[model.ExtraPorts]]:
        """Per-port results; with `fold_over`, a non-open state seen on more ports than that is
        returned as one ExtraPorts count straight from the state matrix (no 65,535 objects).
        `answered_only`: only the ports an answer decided (a scan stopped half-way: the silent ones
        are not filtered yet, only not heard from)."""
        out: list[model.PortResult] = []
        extra: dict[str, model.ExtraPorts] = {}
        codes, counts = np.unique(st.state, return_counts=True)
        if answered_only:
            keep = codes != NONE
            codes, counts = codes[keep], counts[keep]
        per_state: dict[str, int] = {}
        for code, count in zip(codes.tolist(), counts.tolist()):
            state = self._state_reason(code)[0]
            per_state[state] = per_state.get(state, 0) + count
        for code, count in zip(codes.tolist(), counts.tolist()):
            state, reason = self._state_reason(code)
            if fold_over is not None and state != model.OPEN and per_state[state] > fold_over:
                e = extra.setdefault(state, model.ExtraPorts(state, 0, {}, "tcp"))
                e.count += count
                e.reasons[reason] = e.reasons.get(reason, 0) + count
                continue
            for pi in np.nonzero(st.state == code)[0].tolist():
                out.append(model.PortResult(int(self.ports[pi]), "tcp", state, reason,
                                            int(st.ttl[pi]) if code != NONE else None))
        return out, list(extra.values())

    def _state_reason(self, code: int) -> tuple[str, str]:
        k = self.kind
        if code == NONE:
            return k.on_silence, "no-response"
        if code == SYNACK:
            return k.on_synack, "syn-ack"
        if code == RST:
            return k.on_rst, "reset"
        if code == RST_WIN:
            return k.on_rst_window or k.on_rst, "reset"
        if code >= ICMP6_BASE:
            return k.on_icmp, reason6(code)
        return k.on_icmp, ICMP_REASONS.get(code - ICMP_BASE, "unreach")


def answered(st: TargetState) -> bool:
    return bool(np.any(st.state != NONE))


def guess_distance(ttl: int) -> int:
    """Hops from a reply TTL, assuming the nearest common initial TTL (32, 64, 128, 255)."""
    for init in (32, 64, 128, 255):
        if ttl <= init:
            return init - ttl + 1
    return 0




# ---------------------------------------------------------------------------------------------
# The technique (probes/base.py): one instance per raw TCP scan kind asked for (-sS, -sA …)
# ---------------------------------------------------------------------------------------------


class TcpPortScan(Technique[tuple[list[model.PortResult], list[model.ExtraPorts]]]):
    name = "tcp-scan"
    phase = 10

    def __init__(self, kind: str, options: ScanOptions):
        self.kind = kind
        self.options = options
        self.label = f"{kind} scan"
        self._scan: TcpScan | None = None  # the scan in progress (partial() reads it)

    @classmethod
    def create(cls, options: ScanOptions) -> list[TcpPortScan]:
        return [cls(k, options) for k in options.scan_kinds if k in KINDS and options.ports.get("tcp")]

    async def probe(self, hosts: Sequence[model.HostResult], session: Session
                    ) -> dict[str, tuple[list[model.PortResult], list[model.ExtraPorts]]]:
        addrs = [h.address for h in hosts]
        ports = self.options.ports["tcp"]
        task = session.progress.phase(self.label, len(addrs) * len(ports))
        o = self.options
        sport = (o.source_port, o.source_port) if o.source_port else None
        ts = TcpScan(self.kind, addrs, ports, session.timing, links=session.links,
                     data_length=o.data_length, progress=lambda n, _t: session.progress.advance(task, n),
                     sport_range=sport, ttl=o.ttl or 64, frag_size=o.frag_size if o.fragment else 0,
                     on_open=(lambda a, p: session.progress.open_port(a, p, "tcp")) if self.kind == "syn" else None)
        out = {}
        self._scan = ts  # read by partial() when a stop cancels the run below
        states = await ts.run()
        session.progress.finish(task)
        for st in states:
            if self.kind == "syn":
                closed = np.nonzero(st.state == RST)[0]
                if len(closed):
                    session.closed_tcp[st.address] = int(ts.ports[closed[0]])
            out[st.address] = ts.results(st, fold_over=model.EXTRAPORTS_THRESHOLD)
        s = ts.stats
        session.stats[self.kind] = {"probes": s.probes, "replies": s.replies, "rounds": s.rounds,
                                    "retransmitted": s.retransmitted, "elapsed": round(s.elapsed, 3),
                                    "ring_drops": s.ring_drops}
        return out

    def record(self, host: model.HostResult, result: tuple[list[model.PortResult], list[model.ExtraPorts]]) -> None:
        listed, folded = result
        host.ports.extend(listed)
        host.extraports.extend(folded)

    def partial(self) -> dict[str, tuple[list[model.PortResult], list[model.ExtraPorts]]]:
        """The ports an answer decided before the stop (open, closed, ICMP-filtered); the others
        were not sent yet or not answered yet, and are left out."""
        ts = self._scan
        if ts is None:
            return {}
        return {st.address: ts.results(st, fold_over=model.EXTRAPORTS_THRESHOLD, answered_only=True)
                for st in ts.states}
