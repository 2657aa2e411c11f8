"""The IPv6 half of the raw TCP scans (probes/tcpscan.py): the same stateless rounds, state matrix
and cookies, with IPv6's bulk pieces from the engine.

- Crafting: `craft6.Tcp6Template` (numpy, per-frame destination halves, ports, seq/ack), one
  template per source address (a link-local target needs the link-local source).
- Cookies: `FastCookie.host_key6`, the keyed fold of the 128-bit address, so the per-reply check is
  the same `FastCookie.batch` as for IPv4.
- Receiving: whole ring blocks through `ipv6_blocks.tcp6` (the extension chain walked for every
  frame at once) and `Addr6Index` (sorted 128-bit addresses) for the reply's source; ICMPv6 errors
  (rare) go through the per-frame decoder of engine/replies.py, matched by the probe they quote.
- States and reasons are IPv4's; an ICMPv6 destination unreachable gets nmap's IPv6 reason words
  (no-route, admin-prohibited, beyond-scope, host-unreach, port-unreach, reject-route).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import numpy as np

from hostprint.engine import ipv6_blocks
from hostprint.engine import packets as P
from hostprint.engine.cookie import halves
from hostprint.engine.craft6 import Tcp6Template
from hostprint.engine.frames import build_frame6
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, IPv6, ip6_bytes
from hostprint.engine.replies import UNREACH6_REASONS, decode_reply

if TYPE_CHECKING:
    from hostprint.probes.tcpscan import TargetState

#: Reply codes in the state matrix (defined here so both halves share them; tcpscan re-exports them)
NONE, SYNACK, RST, RST_WIN, ICMP_BASE = 0, 1, 2, 3, 16
ETH_IP6 = 14 + 40
_SRC = np.arange(22, 38)  # the source address in an Ethernet frame
_TCP16 = np.arange(ETH_IP6, ETH_IP6 + 16)  # the TCP header's first 16 bytes right after the fixed header
_TCPH = np.dtype([("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"), ("off", "u1"),
                  ("flags", "u1"), ("win", ">u2")])
#: State-matrix codes of ICMPv6 destination unreachables (IPv4's ICMP codes use 16 + code <= 216).
ICMP6_BASE = 224


def reason6(code: int) -> str:
    return UNREACH6_REASONS.get(code - ICMP6_BASE, "dest-unreach")


class Tcp6Path:
    """Mixed into TcpScan: everything that differs for IPv6 targets."""

    # set by TcpScan
    states: list[TargetState]
    cookie: Any
    kind: Any
    pos: np.ndarray
    pos_list: list[int]
    sport_lo: int
    sport_hi: int
    ttl: int
    stats: Any
    state: np.ndarray
    ttl_m: np.ndarray
    ports: np.ndarray
    on_open: Any
    guard: Any
    last_reply: float
    hkeys: np.ndarray
    hi6: np.ndarray
    lo6: np.ndarray
    idx6: ipv6_blocks.Addr6Index | None = None  # None: no IPv6 target, IPv6 frames are skipped
    by_addr6: dict[bytes, TargetState] = {}

    def _index6(self) -> None:
        """Addresses of the IPv6 targets for the vectorised lookup (after _prepare)."""
        six = [i for i, s in enumerate(self.states) if s.family == 6]
        self.v6_tidx = np.array(six, np.int64)
        self.by_addr6 = {s.raw: s for s in self.states if s.family == 6}
        if six:
            hi, lo = halves([self.states[i].raw for i in six])
            self.idx6 = ipv6_blocks.Addr6Index(hi, lo)
        else:
            self.idx6 = None
        raw = [s.raw if s.family == 6 else bytes(16) for s in self.states]
        self.hi6, self.lo6 = halves(raw) if raw else (np.zeros(0, np.uint64), np.zeros(0, np.uint64))

    def host_key(self, address: str) -> tuple[int, int, bytes]:
        """(family, cookie key, raw address) of a target."""
        if ":" in address:
            raw = ip6_bytes(address.partition("%")[0])
            return 6, self.cookie.host_key6(raw), raw
        return 4, self.cookie.host_key(P.ip_to_int(address)), socket.inet_aton(address)

    # ------------------------------------------------------------------ receive

    def _on_block6(self, ring: np.ndarray, starts: np.ndarray, lens: np.ndarray, ts: np.ndarray) -> None:
        """Replies to IPv6 probes in one ring block. Nearly all are TCP right after the fixed
        header: those are read with two fixed-offset gathers (the address and the TCP header, 16
        bytes each); only frames with extension headers take the chain walk (ipv6_blocks.tcp6),
        and ICMPv6 (errors, rare) the per-frame decoder."""
        if self.idx6 is None or not len(starts):
            return
        ok = (lens >= ETH_IP6 + 20) & ((ring[starts + 14] >> 4) == 6)
        nh = ring[np.where(ok, starts, 0) + 20]
        fast = ok & (nh == P.IPPROTO_TCP)
        rest = ~fast & (lens >= ETH_IP6)
        if rest.any():
            for i in np.nonzero(rest & (nh == IPPROTO_ICMPV6))[0].tolist():
                a, ln = int(starts[i]), int(lens[i])
                self._on_icmp6(int(ts[i]), ring[a: a + ln].tobytes())
            chain = rest & (nh != IPPROTO_ICMPV6)
            if chain.any():
                b = ipv6_blocks.tcp6(ring, starts[chain], lens[chain])
                if len(b.idx):
                    self._record6(b.src_hi, b.src_lo, b.sport, b.dport, b.seq, b.ack, b.flags, b.window, b.hlim,
                                  ts[chain][b.idx])
        if not fast.any():
            return
        o = starts[fast]
        addr = ring[o[:, None] + _SRC].view(">u8")  # (n, 2) big-endian halves
        tcp = ring[o[:, None] + _TCP16].view(_TCPH)[:, 0]
        self._record6(addr[:, 0].astype(np.uint64), addr[:, 1].astype(np.uint64), tcp["sport"].astype(np.uint32),
                      tcp["dport"].astype(np.uint32), tcp["seq"].astype(np.uint32), tcp["ack"].astype(np.uint32),
                      tcp["flags"], tcp["win"].astype(np.uint32), ring[o + 21], ts[fast])

    def _record6(self, src_hi: np.ndarray, src_lo: np.ndarray, sport_a: np.ndarray, dport_a: np.ndarray,
                 seq_a: np.ndarray, ack_a: np.ndarray, flags_a: np.ndarray, win_a: np.ndarray, hlim: np.ndarray,
                 ts: np.ndarray) -> None:
        assert self.idx6 is not None
        k = self.idx6.lookup(src_hi, src_lo)
        known = k >= 0
        if not known.any():
            return
        self._record(self.v6_tidx[k[known]], sport_a[known], dport_a[known], seq_a[known],  # type: ignore[attr-defined]
                     ack_a[known], flags_a[known], win_a[known], hlim[known], ts[known])

    def _on_icmp6(self, ts: int, fr: bytes) -> None:
        """An ICMPv6 destination unreachable quoting one of our probes."""
        r = decode_reply(ts, fr)
        if r is None or not r.dest_unreach or r.proto != P.IPPROTO_TCP or r.quoted is None:
            return
        st = self.by_addr6.get(r.peer)
        if st is None or r.our_port is None or r.their_port is None:
            return
        pi = self.pos_list[r.their_port]
        if pi < 0 or not self.sport_lo <= r.our_port <= self.sport_hi:
            return
        rest = r.quoted[1]
        seq = int.from_bytes(rest[4:8], "big") if len(rest) >= 8 else -1
        c = self.cookie.value(st.hkey, r.their_port, r.our_port)
        if not self.kind.cookie_in_ack and seq != c:
            return
        if st.state[pi] == NONE or st.state[pi] >= ICMP_BASE:
            if st.state[pi] == NONE:
                self.stats.replies += 1
            st.state[pi] = ICMP6_BASE + min(r.error.code if r.error else 0, 31)
            st.ttl[pi] = r.ip.ttl

    # ------------------------------------------------------------------ send

    def _reset6(self, st: TargetState, our_port: int, port: int, seq: int) -> None:
        link = st.link
        frame = build_frame6(link.eth(st.mac, P.ETH_P_IPV6),
                             IPv6(ip6_bytes(st.src), st.raw, P.IPPROTO_TCP, hlim=self.ttl),
                             P.TCP(our_port, port, seq, 0, P.RST, 0))
        try:
            link.send(frame)
        except OSError:
            pass

    def template6(self, link: Any, src: str, payload: bytes) -> Tcp6Template:
        return Tcp6Template(link.mac, src, flags=self.kind.flags, options=list(self.kind.options),
                            hlim=self.ttl, payload=payload)
