"""Passive observation: fingerprints from traffic that hosts send anyway (p0f's method).

What is read: client SYNs and server SYN+ACKs (TTL and hop distance, window and its MSS/MTU
multiple, scale, MSS and the link MTU it implies, option layout, quirks, TOS/DSCP), the first
payload segment of each direction of a tracked connection when it is HTTP (request line or status
line, header order, User-Agent, Server), and TCP timestamps across SYNs of one host (clock rate,
uptime). Per host the summary also says when one address shows several stacks, initial TTLs or
timestamp clocks (NAT or a shared address) and when a User-Agent's OS disagrees with the stack.

Why it is built this way: a capture is mostly packets we do not need. A batch of packets from the
pcap reader is classified with numpy in one go (link type, IP version, protocol, fragment offset,
TCP flags, first payload byte); only SYNs and PSH segments that may start an HTTP message go
through Python, and of those only the first payload of each direction of a connection whose SYN
we saw is parsed.
Signatures and their matches are cached by their fields, so a busy client costs a dict lookup
per SYN. The flow table (SYN seen, waiting for SYN+ACK / HTTP) and the host table are bounded:
flows expire after `flow_timeout` seconds of capture time and both tables are pruned to a cap,
so a million-flow capture does not grow memory without bound.
"""

from __future__ import annotations

import json
import struct
import types
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import numpy as np

from hostprint.engine import pcapfile as PF
from hostprint.engine.headers import (
    ACK,
    PSH,
    RST,
    SYN,
    U16,
    U16X2,
    TcpObservation,
    addr_text,
    http_head,
    parse_tcp,
    syn_cache_key,
)
from hostprint.match.passive import PassiveMatcher, raw_signature, win_multiple
from hostprint.model import OPEN, HostResult, PortResult
from hostprint.probes.base import Technique
from hostprint.probes.passive_hosts import HostSpill, HostState, addr_key, same_os
from hostprint.signatures.passive_sigs import MAX_DIST, QUIRK_ORDER, guess_ittl

# nmap's T4 and T6 OS probes: ACK with 20 bytes of options, windows 1024 and 32768 (osscan2.cc)
_OS_ACK_WINDOWS = np.array([1024, 32768], np.int64)
_HTTP_FIRST = np.frombuffer(b"CDGHOPT", np.uint8).astype(np.int64)

# Caches of work done per distinct signature / header set / address (cleared when full). Real
# captures repeat a few hundred signatures; a hostile one makes every packet new, and at ~1.5 kB an
# entry the caches were most of the memory (65,536-entry caches: ~150 MB of a 60k-host capture).
SIG_CACHE_MAX = SYN_CACHE_MAX = 8192
HTTP_CACHE_MAX = 2048
ADDR_CACHE_MAX = 16384
FIRST_LINE_CACHE_MAX = 1024


def _group_key(cols: list[np.ndarray]) -> np.ndarray:
    """One number per packet, equal for packets with equal values in every column: the columns
    folded into 64 bits (FNV-style); two different header sets would have to collide in 64 bits
    within one batch to be merged."""
    key = np.zeros(len(cols[0]), np.uint64)
    with np.errstate(over="ignore"):
        for c in cols:
            key = (key * np.uint64(0x100000001B3)) ^ c.astype(np.uint64)
    return key


def _group_ids(cols: list[np.ndarray]) -> np.ndarray:
    """A group number per packet: packets with equal values in every column share one."""
    _u, inv = np.unique(_group_key(cols), return_inverse=True)
    return inv.reshape(-1)


_DIGIT_TABLES: list[np.ndarray] = []


def _digit_tables() -> list[np.ndarray]:
    """Digit characters by table lookup: 0-99999 as five digits; 0-999 as three, then again with
    trailing zeros as NUL (0 as "0"); 0-9999 as four with trailing zeros as NUL."""
    if not _DIGIT_TABLES:
        d5 = (48 + (np.arange(100_000)[:, None] // 10 ** np.arange(4, -1, -1)) % 10).astype(np.uint8)

        def nul(d: np.ndarray) -> np.ndarray:
            z = d == 48
            tail = np.flip(np.cumprod(np.flip(z, 1), 1), 1).astype(bool)  # zeros with only zeros after them
            return np.where(tail, 0, d).astype(np.uint8)
        d3, d4 = d5[:1000, 2:], d5[:10_000, 1:]
        d3n = nul(d3)
        d3n[0, 0] = 48
        _DIGIT_TABLES.extend([d5, np.concatenate([d3, d3n]), nul(d4)])
    return _DIGIT_TABLES


_PORT_TABLE: list[np.ndarray] = []


def _port_table() -> np.ndarray:
    """b'0' ... b'65535' as a numpy array of 5-byte strings (NUL-padded), made once."""
    if not _PORT_TABLE:
        _PORT_TABLE.append(np.array([b"%d" % p for p in range(65536)], "S5"))
    return _PORT_TABLE[0]


def _ts_texts(ports: np.ndarray, ts: np.ndarray) -> list[bytes]:
    """b'<port>, "ts": <repr(t)>' for every (port, t): the middle of a SYN line, made with numpy.

    repr(t) is the shortest decimal that reads back as t. For 1e9 <= t < 2**32 (every capture
    time since 2001) it has ten integer digits and at most seven fraction digits: the step
    between neighbouring doubles there (2**-23..2**-21 s) is under 1e-6, so at most one 6-digit
    fraction reads back as t (and then nothing shorter does), and the nearest 7-digit one always
    does (it is at most 0.5e-7 away, under half a step). Which one reads back is decided exactly
    in integers from t's mantissa; anything else (other times, the rare exact tie) goes through
    repr itself. One bytes object per line, not two: the join that makes the lines reads fewer
    scattered objects."""
    d5, d3, d4 = _digit_tables()
    n = len(ts)
    ok = (ts >= 1e9) & (ts < 2.0**32)
    mant, ex = np.frexp(np.where(ok, ts, 1e9))
    s = 53 - ex.astype(np.int64)  # fraction bits: t = m / 2**s, m < 2**53
    m = (mant * 2.0**53).astype(np.int64)
    whole, frac = m >> s, m & ((1 << s) - 1)
    half = 1 << (s - 1)
    num6, num7 = frac * 1_000_000, frac * 10_000_000
    c6, c7 = (num6 + half) >> s, (num7 + half) >> s  # the nearest 6- and 7-digit fractions
    gap6 = 2 * np.abs((c6 << s) - num6)  # < 10**6: c6 / 10**6 is within half a step of t
    rt6 = gap6 < 1_000_000
    fr = np.where(rt6, c6 * 10, c7)  # seven fraction digits
    ok &= (gap6 != 1_000_000) & (rt6 | ((num7 & ((1 << s) - 1)) != half)) & (fr < 10_000_000)  # no ties
    fr[~ok] = 0
    whole[~ok] = 10**9
    hi, lo = fr // 10_000, fr % 10_000
    body = np.empty((n, 8 + 18), np.uint8)
    body[:, :8] = np.frombuffer(b', "ts": ', np.uint8)
    body[:, 8:13] = d5[whole // 100_000]
    body[:, 13:18] = d5[whole % 100_000]
    body[:, 18] = 46
    body[:, 19:22] = d3[hi + 1000 * (lo == 0)]  # trailing zeros dropped when nothing follows
    body[:, 22:] = d4[lo]
    # fixed-width byte strings: NUL padding is dropped by the concatenation and by tolist
    texts = np.char.add(_port_table()[ports], body.view("S26").reshape(-1)).tolist()
    for i in np.flatnonzero(~ok).tolist():
        texts[i] = b'%d, "ts": %s' % (int(ports[i]), repr(float(ts[i])).encode())
    return texts


@types.coroutine
def _pass() -> Any:
    """asyncio.sleep(0) without importing asyncio (what it does: yield once to the loop, if any);
    `hostprint passive` drives this coroutine without an event loop."""
    yield


def _val(b: bytes | None) -> str | None:
    return None if b is None else b[:256].decode("latin-1")


# --------------------------------------------------------------------------- the analyzer


Record = dict[str, Any]
_ENC = json.JSONEncoder(ensure_ascii=False, default=str).encode


class PassiveAnalyzer:
    """Feed it batches (pcap) or frames (live); it calls `emit(record)` per observation."""

    def __init__(self, matcher: PassiveMatcher, emit: Callable[[Record], None] | None = None, *,
                 write: Callable[[str], Any] | None = None,
                 flow_timeout: float = 60.0, max_flows: int = 100_000, max_hosts: int = 20_000,
                 spill: bool = True):
        """emit(dict) per observation, and/or write(str) with the same record as one JSON line
        (built from fragments encoded once per signature: the fast path for files).

        Memory (measured on tests/hostile_capture.py, which fills every cap): a flow entry costs
        ~270 bytes and a host at most ~4.5 kB (passive_hosts.py), the per-signature caches ~20 MB in
        all, so the defaults bound the tables to ~27 MB of flows and ~90 MB of hosts. When the host
        table is full, its least recently seen half goes to disk (passive_hosts.HostSpill) and a
        host comes back from there when its address shows up again: no host is lost or split; a
        capture with more live hosts than the table costs disk and time instead of memory.
        spill=False: that half is dropped (counted in stats["hosts_dropped"])."""
        self.m = matcher
        self.emit = emit
        self.write = write
        #: optional: takes the same lines already encoded (UTF-8), as `write` would have written
        #: them; the bulk SYN path hands its lines here when set (JsonlWriter.write_bytes)
        self.write_bytes: Callable[[bytes], Any] | None = None
        self.observations = 0
        self._addrs: dict[bytes, str] = {}
        self._hcache: dict[tuple, tuple] = {}
        self._syn_cache: dict[tuple, list] = {}
        self._first: dict[bytes, str] = {}
        self._vh = tuple(h.encode("latin-1") for h in matcher.http_value_headers)
        self.flow_timeout = flow_timeout
        self.max_flows = max_flows
        self.max_hosts = max_hosts
        self.spill = HostSpill() if spill else None
        # flow key (both endpoints, address+port bytes, in sorted order) ->
        # [t, client's SYN MSS, want request, want response, client endpoint]
        self.flows: dict[bytes, list] = {}
        self.hosts: dict[str, HostState] = {}
        self._cache: dict[tuple, tuple] = {}
        self.stats = {"packets": 0, "candidates": 0, "syn": 0, "synack": 0, "http": 0, "malformed": 0,
                      "flows_expired": 0, "hosts_dropped": 0, "hosts_spilled": 0, "hosts_reloaded": 0,
                      "non_ip": 0}
        self.now = 0.0
        #: the probe detector (match/probedetect.py), or None: `passive --no-detect`
        self.detector: Any = None
        self._marks: tuple[list[int], set[str]] | None = None  # what the detector's groups need
        #: a batch with at least this many like packets (a scan's SYNs) takes the grouped paths
        self.group_min = 64

    # ---------------------------------------------------------------- batches (files)

    def feed_batch(self, b: PF.Batch) -> None:
        n = len(b.starts)
        self.stats["packets"] += n
        if not n:
            return
        lt = b.linktype
        if lt == PF.LINKTYPE_ETHERNET:
            l2, etpos = 14, 12
        elif lt == PF.LINKTYPE_LINUX_SLL:
            l2, etpos = 16, 14
        elif lt == PF.LINKTYPE_LINUX_SLL2:
            l2, etpos = 20, 0
        elif lt in PF._RAW_ALIASES:
            l2, etpos = 0, -1
        elif lt in (PF.LINKTYPE_NULL, PF.LINKTYPE_LOOP):
            l2, etpos = 4, -1
        else:
            self.stats["non_ip"] += n
            return
        buf = b.buf
        u8 = np.frombuffer(buf, np.uint8)
        S = np.asarray(b.starts, np.int64)  # a list, or the pcap reader's array as it is
        L = np.asarray(b.lens, np.int64)
        ip = S + l2

        def at(idx: np.ndarray) -> np.ndarray:
            return u8.take(idx, mode="clip").astype(np.int64)  # past the end: the last byte

        vb = at(ip)
        ver = vb >> 4
        if etpos >= 0:
            et = (at(S + etpos) << 8) | at(S + etpos + 1)
            vlan = (et == 0x8100) | (et == 0x88A8)
            v4 = (et == 0x0800) & (ver == 4)
            v6 = (et == 0x86DD) & (ver == 6)
        else:
            vlan = np.zeros(n, bool)
            v4 = ver == 4
            v6 = ver == 6
        ihl = (vb & 15) << 2
        unfrag = ((at(ip + 6) & 0x1F) | at(ip + 7)) == 0
        pr4, pr6 = at(ip + 9), at(ip + 6)
        det = self.detector
        if det is not None:
            d4, d6 = v4 & unfrag & (ihl >= 20), v6.copy()
        v4 &= (pr4 == 6) & unfrag & (ihl >= 20)
        v6 &= pr6 == 6
        tcp = np.where(v4, ip + ihl, ip + 40)
        ok = (v4 | v6) & (L >= tcp - S + 20)
        fl = at(tcp + 13)
        # PSH segments matter only when the payload can start an HTTP/1.x message (a method
        # or "HTTP/"): first byte one of C D G H O P T
        thl = (at(tcp + 12) >> 4) << 2
        pay = at(tcp + thl)
        httpish = np.isin(pay, _HTTP_FIRST)
        want = ok & (((fl & (SYN | RST)) == SYN) | (((fl & PSH) != 0) & httpish))
        if det is not None:
            self._detect(b, det, d4, d6, ok, fl, thl, ip, ihl, pr4, pr6, at, l2)
        if self.emit is None:
            # A scan's SYNs: IPv4, no IP options, no TCP timestamp, no payload. They go through as
            # groups that share every bit syn_cache_key reads (one full parse per group), before
            # the batch's other candidates so their SYN+ACKs and HTTP find the flows.
            olen = thl - 20
            nots = np.ones(n, bool)
            for j in range(int(olen[v4].max()) if v4.any() else 0):
                nots &= ~((j + 1 < olen) & (at(tcp + 20 + j) == 8) & (at(tcp + 21 + j) == 10))
            tot = (at(ip + 2) << 8) | at(ip + 3)
            bulk = (v4 & ok & ((fl & (SYN | ACK | RST)) == SYN) & (ihl == 20) & nots & (tot == 20 + thl)
                    & (L >= 14 + tot))
            if etpos < 0 or lt != PF.LINKTYPE_ETHERNET:
                bulk &= False
            bi = np.flatnonzero(bulk)
            if len(bi) >= self.group_min:
                want &= ~bulk
                self.stats["candidates"] += len(bi)
                self._syn_groups(b, bi, ip[bi], tcp[bi], fl[bi], olen[bi], at, l2)
        sel = np.flatnonzero(want | vlan)
        if not len(sel):
            return
        self.stats["candidates"] += len(sel)
        v6l = v6.tolist() if v6.any() else None
        vl = vlan.tolist() if vlan.any() else None
        idx = sel.tolist()
        tss = b.ts_seconds(idx)
        ip_ = self._ip
        for i, ts, s, end in zip(idx, tss, S[sel].tolist(), (S + L)[sel].tolist()):
            if vl is not None and vl[i]:
                self._frame_slow(ts, buf, s, end, lt)
                continue
            try:
                ip_(buf, s + l2, end, 6 if v6l is not None and v6l[i] else 4, ts)
            except (IndexError, struct.error, ValueError):
                self.stats["malformed"] += 1

    def _syn_groups(self, b: PF.Batch, bi: np.ndarray, ipb: np.ndarray, tb: np.ndarray, flb: np.ndarray,
                    olen: np.ndarray, at: Callable[[np.ndarray], np.ndarray], l2: int) -> None:
        """SYNs that differ only in addresses, ports, sequence numbers, IP ID and time: the first of
        each group takes the full path (_ip), the others reuse its cached record (what the full
        path does on a cache hit, without re-reading the header). Between two groups' first packets
        the others are done in bulk: flow keys, client endpoints and peer names come from numpy, the
        JSON lines are formatted in comprehensions and written 4,096 to a call, and the flow table
        grows in slices that cannot pass its cap (so it expires at the same packet as one packet at
        a time would)."""
        def u16(o: np.ndarray) -> np.ndarray:
            return (at(o) << 8) | at(o + 1)

        hk = olen.copy()
        for j in range(int(olen.max())):
            hk = (hk * 1_000_003 + np.where(j < olen, at(tb + 20 + j), 256)) & 0x1FFFFFFFFFFFFFFF
        seq0 = (u16(tb + 4) | u16(tb + 6)) == 0
        ack0 = (u16(tb + 8) | u16(tb + 10)) == 0
        src = (u16(ipb + 12) << 16) | u16(ipb + 14)
        dst = (u16(ipb + 16) << 16) | u16(ipb + 18)
        sp, dp = u16(tb), u16(tb + 2)
        cols = [at(ipb + 1), at(ipb + 6) & 0xE0, u16(ipb + 4) == 0, at(ipb + 8), at(tb + 12), flb, u16(tb + 14),
                u16(tb + 18) == 0, seq0, ack0, hk, src]
        inv = _group_ids(cols)
        n = len(bi)
        idx = bi.tolist()
        tss = b.ts_seconds(idx)
        invl = inv.tolist()
        sports, dports, srcl = sp.tolist(), dp.tolist(), src.tolist()
        # flow keys as _ip makes them (both endpoints, address+port, the smaller first) and the
        # client's endpoint, as one byte string each
        e1n, e2n = (src << 16) | sp, (dst << 16) | dp
        kb = np.empty((n, 12), np.uint8)
        kb[:, :6] = np.minimum(e1n, e2n).astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
        kb[:, 6:] = np.maximum(e1n, e2n).astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
        keyl = kb.view("V12").reshape(-1).tolist()  # one bytes object each
        e1b = e1n.astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:].tobytes()
        ue1, e1i = np.unique(e1n, return_inverse=True)  # a scan's SYNs share few client endpoints:
        e1u = [int(x).to_bytes(6, "big") for x in ue1.tolist()]  # one bytes object each
        e1l = e1i.reshape(-1).tolist()
        ud, dinv = np.unique(dst, return_inverse=True)
        pnames = ["%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255) for a in ud.tolist()]
        dinv = dinv.reshape(-1)
        peers = [pnames[i] for i in dinv.tolist()]
        # each (group, source port, peer) -- a scan has one or two -- gets its line's text up to the
        # destination port and from "tsval" on, made once its group's record is known (learn)
        nd = len(ud)
        uc, cinv = np.unique((inv.astype(np.int64) * 65536 + sp) * nd + dinv, return_inverse=True)
        cl = cinv.reshape(-1).tolist()
        combos: dict[int, list[tuple[int, int, int]]] = {}
        for c, v in enumerate(uc.tolist()):
            gs, di = divmod(v, nd)
            g, spv = divmod(gs, 65536)
            combos.setdefault(g, []).append((c, spv, di))
        cpre, csuf = [b""] * len(uc), [b""] * len(uc)
        _u, fidx = np.unique(inv, return_index=True)
        firsts = sorted(fidx.tolist())
        buf, starts, lens = b.buf, b.starts, b.lens
        stats, write, wbytes = self.stats, self.write, self.write_bytes
        tsx: list[bytes] | None = None
        hits: dict[int, tuple[Any, ...] | None] = {}
        gaddr: dict[int, str] = {}
        gmss: dict[int, Any] = {}
        gtail: dict[int, str] = {}
        fast = np.zeros(n, bool)
        line = ('{"type": "observation", "address": "%s", "port": %d, "peer": "%s", "peer_port": %d, '
                '"ts": %r, "tsval": null, %s\n')

        def learn(g: int, k: int, hit: tuple[Any, ...]) -> None:  # a group's record, from its first packet
            sa = srcl[k]
            gaddr[g] = "%d.%d.%d.%d" % (sa >> 24, (sa >> 16) & 255, (sa >> 8) & 255, sa & 255)
            gmss[g], gtail[g] = hit[2]["mss"], hit[6]
            for c, spv, di in combos.get(g, ()):
                cpre[c] = ('{"type": "observation", "address": "%s", "port": %d, "peer": "%s", "peer_port": '
                           % (gaddr[g], spv, pnames[di])).encode()
                csuf[c] = (', "tsval": null, ' + hit[6] + "\n").encode()

        if len(firsts) * 8 > n:  # mostly one packet a group (many sources): one packet at a time
            firsts = []
            self._syn_each(b, range(n), idx, invl, tss, hits, fast, keyl, e1b, gaddr, gmss, gtail, learn, sports,
                           peers, dports, l2, line)
        for j, f in enumerate(firsts):
            g = invl[f]
            try:
                i = idx[f]
                hit = hits[g] = self._ip(buf, int(starts[i]) + l2, int(starts[i] + lens[i]), 4, tss[f])
            except (IndexError, struct.error, ValueError):
                stats["malformed"] += 1
                hit = hits[g] = None
            if hit is not None:
                learn(g, f, hit)
            a, z = f + 1, (firsts[j + 1] if j + 1 < len(firsts) else n)
            if a >= z:
                continue
            if len(gaddr) < len(hits) and any(hits[x] is None for x in set(invl[a:z])):
                self._syn_each(b, range(a, z), idx, invl, tss, hits, fast, keyl, e1b, gaddr, gmss, gtail,
                               learn, sports, peers, dports, l2, line)
                continue
            fast[a:z] = True
            if write is not None:  # the lines _observe writes, 4,096 at a time (~2 MB: bounded memory)
                if tsx is None:  # '<dport>, "ts": <repr(ts)>' of every packet, made with numpy
                    tsx = _ts_texts(dp, np.array(tss, np.float64))
                for u in range(a, z, 4096):
                    w = min(z, u + 4096)
                    text = b"".join(chain.from_iterable(zip(map(cpre.__getitem__, cl[u:w]), tsx[u:w],
                                                            map(csuf.__getitem__, cl[u:w]))))
                    if wbytes is not None:
                        wbytes(text)
                    else:
                        write(text.decode())
            k = a
            while k < z:  # the flow table, in slices that cannot pass its cap
                flows = self.flows
                room = self.max_flows - len(flows)
                if room <= 0:
                    flows[keyl[k]] = [tss[k], gmss[invl[k]], True, True, e1b[6 * k: 6 * k + 6]]
                    if len(flows) > self.max_flows:
                        self.now = tss[k]
                        self._expire()
                    k += 1
                    continue
                m = k + min(room, z - k)
                flows.update(zip(keyl[k:m],
                                 [[t, gmss[g], True, True, e1u[e]] for t, g, e in zip(tss[k:m], invl[k:m], e1l[k:m])]))
                k = m
        fi = np.flatnonzero(fast)
        n_fast = len(fi)
        if not n_fast:
            return
        stats["syn"] += n_fast
        self.observations += n_fast
        self.now = max(self.now, tss[-1])
        # the host tables once per group (its packets share the source: it is a grouping column),
        # in the order of each group's last packet, as the packets would have left them
        gi = inv[fi]
        counts = np.bincount(gi)
        lastk = np.full(len(counts), -1, np.int64)
        np.maximum.at(lastk, gi, fi)
        for g in sorted(np.flatnonzero(counts).tolist(), key=lambda x: int(lastk[x])):
            hit = hits[g]
            assert hit is not None
            self._syn_hosts(hit, int(counts[g]), tss[int(lastk[g])], gaddr[g])

    def _syn_each(self, b: PF.Batch, ks: range, idx: list[int], invl: list[int], tss: list[float], hits: dict[int, Any],
                  fast: np.ndarray, keyl: list[bytes], e1b: bytes, gaddr: dict[int, str], gmss: dict[int, Any],
                  gtail: dict[int, str], learn: Callable[[int, int, tuple[Any, ...]], None], sports: list[int],
                  peers: list[str], dports: list[int], l2: int, line: str) -> None:
        """_syn_groups one packet at a time, for the rare stretch where a group's first packet was
        malformed (each of that group's packets then takes the full path, as it would alone)."""
        buf, starts, lens = b.buf, b.starts, b.lens
        for k in ks:
            g = invl[k]
            hit = hits.get(g)
            if hit is None:
                try:
                    i = idx[k]
                    hit = hits[g] = self._ip(buf, int(starts[i]) + l2, int(starts[i] + lens[i]), 4, tss[k])
                except (IndexError, struct.error, ValueError):
                    self.stats["malformed"] += 1
                    hits[g] = None
                    continue
                if hit is not None:
                    learn(g, k, hit)
                continue
            fast[k] = True
            flows = self.flows
            flows[keyl[k]] = [tss[k], gmss[g], True, True, e1b[6 * k: 6 * k + 6]]
            if len(flows) > self.max_flows:
                self.now = tss[k]
                self._expire()
            if self.write is not None:
                self.write(line % (gaddr[g], sports[k], peers[k], dports[k], tss[k], gtail[g]))

    def _syn_hosts(self, hit: tuple[Any, ...], n: int, ts: float, addr: str) -> None:
        """One group's n SYNs in the host table (what n cache hits of _observe add up to)."""
        os_d, dist, raw, raw_s, role, kind, tail, lab, os_full = hit
        h = self.hosts.get(addr)
        if h is None:
            h = self._host(addr, ts)
        h.seen(ts)
        cnt = h.count
        cnt[role] = cnt.get(role, 0) + n
        if h.add_signature(raw_s, raw["ittl"], raw["ttl"]) and raw["mtu"]:
            h.mtu, h.link = raw["mtu"], raw["link"]
        if n > 1 and raw_s in h.sigs:
            h.sigs[raw_s] += n - 1
        if dist is not None:
            h.distance = dist
        if lab is not None:
            c = h.labels.get(lab)
            if c is None:
                c = 0
                h.add_family(role, os_d["family"])
            c = h.labels[lab] = c + n
            if c > h.best_n:
                h.best, h.best_n = os_full, c

    def _detect(self, b: PF.Batch, det: Any, d4: np.ndarray, d6: np.ndarray, ok: np.ndarray, fl: np.ndarray,
                thl: np.ndarray, ip: np.ndarray, ihl: np.ndarray, pr4: np.ndarray, pr6: np.ndarray,
                at: Callable[[np.ndarray], np.ndarray], l2: int) -> None:
        """Hand the probe detector the packets that can be probes (decided with numpy over the
        batch): TCP without ACK, SYN+ACK, bare ACK or FIN+ACK without options or payload, small
        PSH payloads, UDP, ICMP echo/timestamp/information/mask and ICMPv6 echo requests."""
        from hostprint.match.probedetect import parse_packet

        tot = np.where(d4, (at(ip + 2) << 8) | at(ip + 3), ((at(ip + 4) << 8) | at(ip + 5)) + 40)
        l4 = np.where(d4, ip + ihl, ip + 40)
        paylen = tot - (l4 - ip) - thl
        f6 = fl & 0x3F
        bare = (paylen == 0) & ((f6 == ACK) | (f6 == (ACK | 1))) & (
            (thl == 20) | ((thl == 40) & ((fl & 0xC0) == 0) & np.isin(at(l4 + 14) << 8 | at(l4 + 15), _OS_ACK_WINDOWS)))
        tcpw = ok & (((fl & ACK) == 0) | ((fl & (SYN | ACK)) == (SYN | ACK)) | bare
                     | (((fl & PSH) != 0) & (paylen > 0) & (paylen <= 1024)))
        proto = np.where(d4, pr4, pr6)
        itype = at(l4)
        other = (d4 | d6) & (((proto == 17)) | ((proto == 1) & d4 & ((itype == 8) | (itype == 13) | (itype == 15) | (itype == 17)))
                             | ((proto == 58) & d6 & (itype == 128)))
        buf, starts, lens = b.buf, b.starts, b.lens
        # Header-only IPv4 TCP probes (a scan's bulk) go as groups of like packets: numpy finds the
        # groups, Python sees one packet per group (feed_group).
        if self._marks is None:
            self._marks = det.group_marks() or ([], {"off"})
        shifts, kinds = self._marks
        if "off" not in kinds:
            bulk = tcpw & d4 & (paylen == 0) & (((fl & ACK) == 0) | (((f6 == ACK) | (f6 == (ACK | 1))) & (thl == 20)))
            bi = np.flatnonzero(bulk)
            if len(bi) >= self.group_min:
                tcpw = tcpw & ~bulk
                self._detect_groups(b, det, bi, ip[bi], l4[bi], fl[bi], thl[bi], at, l2, shifts, kinds)
        sel = np.flatnonzero(tcpw | other)
        if not len(sel):
            return
        idx = sel.tolist()
        feed = det.feed
        for i, ts in zip(idx, b.ts_seconds(idx)):
            s = int(starts[i])
            pk = parse_packet(buf, s + l2, s + int(lens[i]), ts)
            if pk is not None:
                feed(pk)

    def _detect_groups(self, b: PF.Batch, det: Any, bi: np.ndarray, ipb: np.ndarray, l4b: np.ndarray, flb: np.ndarray,
                       thb: np.ndarray, at: Callable[[np.ndarray], np.ndarray], l2: int, shifts: list[int],
                       kinds: set[str]) -> None:
        from hostprint.match.probedetect import parse_packet

        def u16(o: np.ndarray) -> np.ndarray:
            return (at(o) << 8) | at(o + 1)

        def u32(o: np.ndarray) -> np.ndarray:
            return (u16(o) << 16) | u16(o + 2)

        src, dst, ipid = u32(ipb + 12), u32(ipb + 16), u16(ipb + 4)
        sport, dport, seq, ack = u16(l4b), u16(l4b + 2), u32(l4b + 4), u32(l4b + 8)
        olen = thb - 20
        h = olen.copy()
        for j in range(int(olen.max()) if len(olen) else 0):  # the option bytes, folded into one number
            h = (h * 1_000_003 + np.where(j < olen, at(l4b + 20 + j), 256)) & 0x1FFFFFFFFFFFFFFF
        cols = [src, dst, flb, u16(l4b + 14), at(ipb + 8), at(ipb + 1), at(ipb + 6) & 0x40, u16(l4b + 18),
                at(l4b + 12) & 15, h, np.where(np.isin(ipid, list(det._marks)), ipid, -1)]
        c = np.where(((flb & SYN) != 0) | ((flb & ACK) == 0), seq, ack)
        marks = []
        for sh in shifts:
            marks.append((ipid == ((c >> sh) & 0xFFFF)) & (c != 0))
        if "ipid_xor" in kinds:
            marks.append(ipid == ((dst ^ dport ^ seq) & 0xFFFF))
        cols += marks
        # the per-packet marks as one number (bit j = mark j): with the header, all a rule can test
        mark_bits = np.zeros(len(bi), np.int64)
        for j, m in enumerate(marks):
            mark_bits |= m.astype(np.int64) << j
        mbl = mark_bits.tolist()
        key = _group_key(cols)
        order = np.argsort(key, kind="stable")  # each group's packets together, in capture order
        cuts = np.flatnonzero(np.diff(key[order])) + 1
        groups = np.split(order, cuts)
        # each group in the order of its last packet, so events keep the capture's order
        groups.sort(key=lambda g: int(g[-1]))
        ends = [int(bi[g[-1]]) for g in groups]
        firsts = [int(bi[g[0]]) for g in groups]
        t_end, t_first = b.ts_seconds(ends), b.ts_seconds(firsts)
        buf, starts, lens = b.buf, b.starts, b.lens
        for g, i, ts, t0 in zip(groups, ends, t_end, t_first):
            s = int(starts[i])
            pk = parse_packet(buf, s + l2, s + int(lens[i]), ts)
            if pk is None:
                continue
            det.feed_group(pk, dport[g].tolist(), sport[g].tolist(), t0, mbl[int(g[-1])])

    # ---------------------------------------------------------------- frames (live, odd link layers)

    def feed_frame(self, ts: float, frame: bytes, linktype: int = PF.LINKTYPE_ETHERNET) -> None:
        self.stats["packets"] += 1
        if self.detector is not None:
            self._detect_frame(ts, frame, linktype)
        try:
            self._frame_slow(ts, frame, 0, len(frame), linktype)
        except (IndexError, struct.error, ValueError):
            self.stats["malformed"] += 1

    def _detect_frame(self, ts: float, frame: bytes, lt: int) -> None:
        from hostprint.match.probedetect import parse_packet

        if lt == PF.LINKTYPE_ETHERNET:
            off = 12
            if len(frame) < 14:
                return
            et = U16.unpack_from(frame, off)[0]
            off += 2
            while et in (0x8100, 0x88A8) and len(frame) - off >= 4:
                et = U16.unpack_from(frame, off + 2)[0]
                off += 4
            if et not in (0x0800, 0x86DD):
                return
        elif lt in (PF.LINKTYPE_LINUX_SLL, PF.LINKTYPE_LINUX_SLL2, PF.LINKTYPE_NULL, PF.LINKTYPE_LOOP):
            off = {PF.LINKTYPE_LINUX_SLL: 16, PF.LINKTYPE_LINUX_SLL2: 20}.get(lt, 4)
        elif lt in PF._RAW_ALIASES:
            off = 0
        else:
            return
        pk = parse_packet(frame, off, len(frame), ts)
        if pk is not None:
            assert self.detector is not None
            self.detector.feed(pk)

    def _frame_slow(self, ts: float, buf: bytes, s: int, end: int, lt: int) -> None:
        if lt == PF.LINKTYPE_ETHERNET:
            off = s + 12
            if end - off < 2:
                return
            et = U16.unpack_from(buf, off)[0]
            off += 2
            while et in (0x8100, 0x88A8) and end - off >= 4:
                et = U16.unpack_from(buf, off + 2)[0]
                off += 4
            if et not in (0x0800, 0x86DD):
                self.stats["non_ip"] += 1
                return
            ip = off
        elif lt == PF.LINKTYPE_LINUX_SLL:
            ip = s + 16
        elif lt == PF.LINKTYPE_LINUX_SLL2:
            ip = s + 20
        elif lt in (PF.LINKTYPE_NULL, PF.LINKTYPE_LOOP):
            ip = s + 4
        elif lt in PF._RAW_ALIASES:
            ip = s
        else:
            self.stats["non_ip"] += 1
            return
        if end - ip < 20:
            return
        ver = buf[ip] >> 4
        if ver == 4:
            if buf[ip + 9] != 6 or (U16.unpack_from(buf, ip + 6)[0] & 0x1FFF):
                return
            t = ip + ((buf[ip] & 15) << 2)
        elif ver == 6:
            if buf[ip + 6] != 6:
                return
            t = ip + 40
        else:
            return
        if end - t < 20:
            return
        fl = buf[t + 13]
        if (fl & (SYN | RST)) == SYN or fl & PSH:
            self._ip(buf, ip, end, ver, ts)

    # ---------------------------------------------------------------- one candidate packet

    def _ip(self, buf: bytes, ip: int, end: int, ver: int, ts: float) -> tuple[Any, ...] | None:
        if ver == 4:
            t = ip + ((buf[ip] & 15) << 2)
            a0, a1 = ip + 12, ip + 16
            alen = 4
        else:
            t = ip + 40
            a0, a1 = ip + 8, ip + 24
            alen = 16
        fl = buf[t + 13]
        if fl & SYN:
            self.now = ts
            synack = bool(fl & ACK)
            src, dst = buf[a0: a0 + alen], buf[a1: a1 + alen]
            ports = buf[t: t + 4]
            e1, e2 = src + ports[:2], dst + ports[2:]
            fk = e1 + e2 if e1 < e2 else e2 + e1  # one key for both directions
            peer_mss = flow = None
            if synack:
                flow = self.flows.get(fk)
                if flow is not None and flow[4] == e2:
                    peer_mss = flow[1]
                    flow[0] = ts
            fast = syn_cache_key(buf, ip, t, end) if ver == 4 else None
            got = None
            if fast is not None:
                ck = (fast[0], peer_mss)
                got = self._syn_cache.get(ck)
            if got is None:
                r = parse_tcp(buf, ip, end, ver, synack)
                if r is None:
                    self.stats["malformed"] += 1
                    return None
                o = r[0]
                tsval = o.tsval
                hit = None
                if fast is not None and r[4] == fast[0][-3]:  # the timestamp sits where the key blanked it
                    if len(self._syn_cache) > SYN_CACHE_MAX:
                        self._syn_cache.clear()
                    got = self._syn_cache[ck] = [o, None]
            else:
                assert fast is not None  # a cache hit comes from a key
                o, hit = got
                tsval = fast[1]
            sport, dport = U16X2.unpack_from(ports)
            if synack:
                self.stats["synack"] += 1
            else:
                self.stats["syn"] += 1
                self.flows[fk] = [ts, o.mss, True, True, e1]  # time, client MSS, want request/response, client
                if len(self.flows) > self.max_flows:
                    self._expire()
            hit = self._observe(o, tsval, src, sport, dst, dport, ts, peer_mss, hit)
            if got is not None:
                got[1] = hit
            return hit
        # PSH segment: HTTP only on connections whose SYN we saw, first payload per direction
        flows = self.flows
        if not flows:
            return None
        e1 = buf[a0: a0 + alen] + buf[t: t + 2]
        e2 = buf[a1: a1 + alen] + buf[t + 2: t + 4]
        fk = e1 + e2 if e1 < e2 else e2 + e1
        flow = flows.get(fk)
        if flow is None:
            return None
        request = e1 == flow[4]
        j = 2 if request else 3
        if not flow[j]:
            return None
        flow[j] = False
        if not flow[2] and not flow[3]:
            del flows[fk]
        thl = (buf[t + 12] >> 4) << 2
        if ver == 4:
            total = U16.unpack_from(buf, ip + 2)[0]
            pend = min(end, ip + total)
        else:
            pend = min(end, ip + 40 + U16.unpack_from(buf, ip + 4)[0])
        if pend - (t + thl) < 16:
            return None
        h = http_head(buf[t + thl: pend])
        if h is None or h[0] != request:
            return None
        self.stats["http"] += 1
        sport, dport = U16X2.unpack_from(buf, t)
        self._observe_http(h, buf[a0: a0 + alen], sport, buf[a1: a1 + alen], dport, ts)
        return None

    # ---------------------------------------------------------------- bookkeeping

    def _expire(self) -> None:
        """Drop flows idle longer than flow_timeout; if still over the cap, the older half."""
        # in place: a second table beside the full one was the run's memory peak (live, 1 M flows)
        flows = self.flows
        limit = self.now - self.flow_timeout
        before = len(flows)
        for k in [k for k, v in flows.items() if v[0] < limit]:
            del flows[k]
        if len(flows) > self.max_flows * 3 // 4:
            times = sorted(v[0] for v in flows.values())
            cut = times[len(times) // 2]
            del times
            for k in [k for k, v in flows.items() if v[0] <= cut]:
                del flows[k]
        self.stats["flows_expired"] += before - len(flows)

    def _host(self, addr: str, ts: float) -> HostState:
        h = self.hosts.get(addr)
        if h is None:
            if self.spill is not None and self.spill.count:
                h = self.spill.take(addr)
                if h is not None:
                    self.stats["hosts_reloaded"] += 1
            if len(self.hosts) >= self.max_hosts:
                # keep memory bounded: the least recently seen half goes to disk (or is forgotten)
                order = sorted(self.hosts.values(), key=lambda x: x.last_ts)
                cut = len(order) // 2
                self.hosts = {x.address: x for x in order[cut:]}
                if self.spill is not None:
                    self.spill.put(order[:cut])
                    self.stats["hosts_spilled"] += cut
                else:
                    self.stats["hosts_dropped"] += cut
                del order
            if h is None:
                h = HostState(addr, ts, ts)
            self.hosts[addr] = h
        h.seen(ts)
        return h

    def _addr(self, b: bytes) -> str:
        a = self._addrs.get(b)
        if a is None:
            if len(self._addrs) > ADDR_CACHE_MAX:
                self._addrs.clear()
            a = self._addrs[b] = addr_text(b)
        return a

    def _observe(self, o: TcpObservation, tsval: int | None, src: bytes, sport: int, dst: bytes, dport: int,
                 ts: float, peer_mss: int | None, hit: tuple | None = None) -> tuple:
        if hit is None:
            hit = self._cache.get(o.key(peer_mss))
        if hit is None:
            m = self.m.match_tcp(o, peer_mss)
            os_d = m.os_dict(full=False) if m else None
            os_full = m.os_dict() if m else None
            dist = m.distance if m else guess_ittl(o.ttl) - o.ttl
            n, mtu_form = win_multiple(o, peer_mss)
            raw_s = raw_signature(o, peer_mss)
            link_mtu = (o.mss + (40 if o.ver == 4 else 60)) if o.mss else None
            raw = {
                "sig": raw_s, "ver": o.ver, "ttl": o.ttl, "ittl": (m.entry.ittl if m and not m.entry.bad_ttl and m.entry.ittl >= o.ttl else guess_ittl(o.ttl)),
                "olen": o.olen, "mss": o.mss, "mtu": link_mtu, "link": self.m.link(link_mtu) if link_mtu else None,
                "win": o.win, "win_multiple": (f"{'mtu' if mtu_form else 'mss'}*{n}" if n else None), "wscale": o.wscale,
                "olayout": ",".join(o.layout), "quirks": [q for q in QUIRK_ORDER if q in o.quirks],
                "pclass": "+" if o.pclass else "0", "tos": o.tos, "dscp": o.tos >> 2,
            }
            dist_v = dist if dist <= MAX_DIST else None
            role = "server" if o.synack else "client"
            kind = "syn+ack" if o.synack else "syn"
            # the record's constant part, JSON-encoded once per signature (the text fast path)
            tail = ('"kind": "%s", "role": "%s", ' % (kind, role)
                    + _ENC({"os": os_d, "distance": dist_v, "raw": raw})[1:])
            hit = (os_d, dist_v, raw, raw_s, role, kind, tail, f"{role}:{os_d['name']}" if os_d else None, os_full)
            if len(self._cache) > SIG_CACHE_MAX:
                self._cache.clear()
            self._cache[o.key(peer_mss)] = hit
        os_d, dist, raw, raw_s, role, kind, tail, lab, os_full = hit
        addr = self._addr(src)
        peer = self._addr(dst)
        self.observations += 1
        if self.write is not None:
            self.write('{"type": "observation", "address": "%s", "port": %d, "peer": "%s", "peer_port": %d, '
                       '"ts": %r, "tsval": %s, %s\n' % (addr, sport, peer, dport, ts,
                                                       "null" if tsval is None else tsval, tail))
        if self.emit is not None:
            self.emit({"type": "observation", "address": addr, "role": role, "port": sport, "peer": peer,
                       "peer_port": dport, "ts": ts, "kind": kind, "os": os_d, "distance": dist, "raw": raw,
                       "tsval": tsval})
        h = self.hosts.get(addr)
        if h is None:
            h = self._host(addr, ts)
        h.seen(ts)
        cnt = h.count
        cnt[role] = cnt.get(role, 0) + 1
        if h.add_signature(raw_s, raw["ittl"], o.ttl) and raw["mtu"]:
            h.mtu, h.link = raw["mtu"], raw["link"]
        if dist is not None:
            h.distance = dist
        if o.synack:
            h.add_port(sport)
        if lab is not None:
            c = h.labels.get(lab)
            if c is None:
                c = 0
                h.add_family(role, os_d["family"])
            c = h.labels[lab] = c + 1
            if c > h.best_n:
                h.best, h.best_n = os_full, c
        if tsval:
            h.add_timestamp(role, ts, tsval)
        return hit

    def _observe_http(self, r: tuple, src: bytes, sport: int, dst: bytes, dport: int, ts: float) -> None:
        request, version, first, names_b, values = r
        sw_b = values.get(b"user-agent" if request else b"server")
        via = values.get(b"via")
        key = (request, version, names_b, sw_b, via, tuple(map(values.get, self._vh)))
        hit = self._hcache.get(key)
        if hit is None:
            sw = _val(sw_b) or ""
            names = [n.decode("latin-1") for n in names_b]
            m = self.m.match_http(request, version, [(n.decode("latin-1"), _val(values[n.lower()]) or "")
                                                     for n in names_b], sw)
            app = None
            if m is not None:
                app = {"name": m.label.full, "family": m.label.name, "confidence": 0.6 if m.label.generic else 0.8,
                       "dishonest": m.dishonest, "signature": m.entry.text, "source": m.label.source.split(" (", 1)[0]}
            claimed = self.m.ua_os(sw) if request and sw else None
            raw = {"kind": "request" if request else "response", "version": version, "headers": names}
            if sw_b is not None:
                raw["user_agent" if request else "server"] = sw
            if via is not None:
                raw["via"] = _val(via)
            raw["claimed_os"] = claimed
            sig_fake = (f"headers look like {m.label.full} but the software string is {sw[:60]!r}"
                        if m is not None and m.dishonest else None)
            role = "client" if request else "server"
            kind = "http-request" if request else "http-response"
            fmt = ('{"type": "observation", "address": "%%s", "role": "%s", "port": %%d, "peer": "%%s", '
                   '"peer_port": %%d, "ts": %%r, "kind": "%s", "os": null, "app": %s, "distance": %%s, '
                   '"raw": {%s, "first_line": %%s, "fake": %%s}}\n'
                   % (role, kind, _ENC(app).replace("%", "%%"), _ENC(raw)[1:-1].replace("%", "%%")))
            hit = (app, claimed, sig_fake, sw, raw, fmt, role, kind)
            if len(self._hcache) > HTTP_CACHE_MAX:
                self._hcache.clear()
            self._hcache[key] = hit
        app, claimed, sig_fake, sw, raw, fmt, role, kind = hit
        addr = self._addr(src)
        h = self.hosts.get(addr)
        if h is None:
            h = self._host(addr, ts)
        h.seen(ts)
        fake = None
        if claimed:
            tcp_os = h.best["family"] if h.best else None
            if tcp_os and not same_os(claimed, tcp_os):
                fake = f"User-Agent claims {claimed}, TCP stack looks like {tcp_os}"
        if fake is None:
            fake = sig_fake
        if fake is not None:
            h.add_dishonest(fake)
        first_j = self._first.get(first)
        if first_j is None:
            if len(self._first) > FIRST_LINE_CACHE_MAX:
                self._first.clear()
            first_j = self._first[first] = _ENC(first[:200].decode("latin-1"))
        self.observations += 1
        if self.write is not None:
            self.write(fmt % (addr, sport, self._addr(dst), dport, ts, "null" if h.distance is None else h.distance,
                              first_j, "null" if fake is None else _ENC(fake)))
        if self.emit is not None:
            self.emit({"type": "observation", "address": addr, "role": role, "port": sport, "peer": self._addr(dst),
                       "peer_port": dport, "ts": ts, "kind": kind, "os": None, "app": app, "distance": h.distance,
                       "raw": {**raw, "first_line": first[:200].decode("latin-1"), "fake": fake}})
        h.count["http"] = h.count.get("http", 0) + 1
        if app:
            h.add_app(app["name"])
        if sw:
            h.add_software(sw, request)
        if claimed:
            h.add_ua_os(claimed)

    def summaries(self) -> list[dict[str, Any]]:
        """Every host's summary in address order (hosts spilled to disk included: then the table is
        drained)."""
        if self.spill is not None and self.spill.count:
            return [h.summary() for h in self.drain()]
        return [h.summary() for h in sorted(self.hosts.values(), key=lambda x: addr_key(x.address))]

    def drain(self) -> Iterator[HostState]:
        """Every host once, in address order, each removed from the table as it is handed out (so
        summarising a big table never holds every summary at once); spilled hosts included."""
        if self.spill is not None and self.spill.count:
            self.spill.put(self.hosts.values())
            self.hosts = {}
            yield from self.spill.drain()
            return
        for addr in sorted(self.hosts, key=addr_key):
            h = self.hosts.pop(addr, None)
            if h is not None:
                yield h


class PassiveTechnique(Technique[dict[str, Any]]):
    """Passive observation through the contract of probes/base.py. A listening technique: it
    sends nothing, and `probe` returns every host its source (capture files or a live interface)
    showed, given hosts or not; `record` turns a host's summary into its os.passive block and the
    ports it was seen serving. The command builds it with its source (`passive -r/-i`)."""

    name = "passive"
    phase = 60
    needs_raw = False
    label = "passive"

    def __init__(self, matcher: PassiveMatcher, *, files: list[Any] | None = None, iface: str | None = None,
                 count: int | None = None, timeout: float | None = None, write: Callable[[str], Any] | None = None,
                 summarise: bool = True):
        """summarise=False: `probe` only reads, and the caller drains the analyzer's hosts itself
        (analyzer.drain()) one at a time, as `hostprint passive` does to bound memory."""
        self.analyzer = PassiveAnalyzer(matcher, None, write=write)
        self.summarise = summarise
        self.files = files or []
        self.iface = iface
        self.count = count
        self.timeout = timeout
        #: damaged captures (CaptureError each): the packets before the damage were read, and the
        #: files after a damaged one still are
        self.errors: list[Exception] = []
        self.files_read = 0

    @property
    def error(self) -> Exception | None:
        """The first damaged capture, or None."""
        return self.errors[0] if self.errors else None

    @classmethod
    def create(cls, options: Any) -> list[PassiveTechnique]:
        return []  # only `hostprint passive` runs it, with its capture source

    async def probe(self, hosts: Any, session: Any) -> dict[str, dict[str, Any]]:
        from hostprint.engine.pcapfile import CaptureError, read_batches

        if self.iface:
            from hostprint.engine.capture import live_capture

            # run without an event loop (commands/passive._drive), so Ctrl-C is a KeyboardInterrupt
            # here: the capture stops, the detector still closes its records, then the stop goes on
            # to the command, which saves what was read and exits 130 (README)
            try:
                live_capture(self.iface, self._feed_live,
                             stop=lambda: self.count is not None and self.analyzer.observations >= self.count,
                             timeout=self.timeout, probes=self.analyzer.detector is not None,
                             counters=self.analyzer.stats)
            except KeyboardInterrupt as e:
                if self.analyzer.detector is not None:
                    self.analyzer.detector.finish()
                raise e from None
        for f in self.files:
            try:
                for b in read_batches(f):
                    self.analyzer.feed_batch(b)
                    await _pass()  # a Ctrl-C (asyncio.run cancels this task) stops here
            except CaptureError as e:
                self.errors.append(e)
            self.files_read += 1
        if self.analyzer.detector is not None:
            self.analyzer.detector.finish()
        if not self.summarise:
            return {}
        return {s["address"]: s for s in self.analyzer.summaries()}

    def _feed_live(self, b: PF.Batch) -> None:
        """One live batch (ring blocks). With -c it is fed in parts of at most as many packets as
        observations are still wanted (a packet makes at most one), so the run stops at exactly
        COUNT observations, as tcpdump -c does, and the packets after the last one are not read."""
        an = self.analyzer
        if self.count is None:
            an.feed_batch(b)
            return
        n, i = len(b.starts), 0
        while i < n:
            left = self.count - an.observations
            if left <= 0:
                return
            j = min(n, i + left)
            an.feed_batch(b if i == 0 and j == n else b.part(i, j))
            i = j

    def record(self, host: HostResult, result: dict[str, Any]) -> None:
        from hostprint.match.passive import passive_block

        host.status, host.reasons, host.distance = "up", ["passive"], result["distance"]
        host.started, host.finished = result["first_seen"], result["last_seen"]
        # a SYN+ACK seen from a port means it was open at that time (nmap's reason word)
        host.set_ports([PortResult(p, "tcp", OPEN, "syn-ack") for p in result["server_ports"]])
        host.os.add(passive_block(result))
