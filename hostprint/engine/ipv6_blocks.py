"""Vectorised reading of IPv6 replies from whole receive-ring blocks (the IPv6 side of the bulk path).

The IPv4 bulk receiver (probes/tcpscan.py) reads a block's SYN-ACKs and RSTs with numpy fancy
indexing at fixed offsets, because an IPv4 reply's TCP header sits right after a header whose
length is in one nibble. IPv6 has no such nibble: the transport follows a chain. Replies to our
probes almost never carry extension headers, but a scanner must not misread the ones that do, so
the chain is walked here for all frames at once, a bounded number of rounds (each round advances
every frame still inside a walkable header by one header). Every index is clamped into its frame
first, so garbage, truncated and hostile frames are skipped, never read out of bounds.

Addresses come out as two uint64 halves, the form cookie.Cookie.batch6/FastCookie.host_keys6 and
Addr6Index take, so reply validation stays entirely in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hostprint.engine.ipv6 import (
    IPPROTO_AH,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMPV6,
    IPPROTO_ROUTING,
)

ETH, IP6 = 14, 40
_WALK = np.array([IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_AH], np.uint8)
ADDR6 = np.dtype([("hi", "<u8"), ("lo", "<u8")])


def _be(ring: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    v = ring[at].astype(np.uint64)
    for i in range(1, width):
        v = (v << np.uint64(8)) | ring[at + i]
    return v


def ipv6_frames(ring: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Which frames are untagged Ethernet carrying IPv6 with a whole fixed header."""
    ok = lens >= ETH + IP6
    s = np.where(ok, starts, 0)
    return ok & (ring[s + 12] == 0x86) & (ring[s + 13] == 0xDD) & ((ring[s + ETH] >> 4) == 6)


def transport(ring: np.ndarray, starts: np.ndarray, lens: np.ndarray, max_ext: int = 8
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok, proto, offset) per frame: the upper-layer protocol after the extension chain and its
    offset in `ring`. `ok` is False for non-IPv6 frames, chains that run past the frame or are
    longer than `max_ext`, and fragments other than atomic ones (their data is not a header)."""
    ok = ipv6_frames(ring, starts, lens)
    if not ok.any():
        return ok, np.zeros(len(starts), np.uint8), starts.astype(np.int64)
    safe = np.where(ok, starts, starts[ok][0])  # frames we skip read from one that is long enough
    end = safe + np.minimum(np.where(ok, lens, 0), ETH + IP6 + _be(ring, safe + ETH + 4, 2).astype(np.int64))
    off = safe + ETH + IP6
    proto = np.where(ok, ring[safe + ETH + 6], 0).astype(np.uint8)
    for _ in range(max_ext):
        walk = ok & np.isin(proto, _WALK)
        if not walk.any():
            break
        fits = off + 8 <= end
        ok &= ~walk | fits
        walk &= fits
        at = np.where(walk, off, safe)
        nxt, ln = ring[at], ring[at + 1].astype(np.int64)
        size = np.where(proto == IPPROTO_AH, (ln + 2) * 4, (ln + 1) * 8)
        frag = proto == IPPROTO_FRAGMENT
        size = np.where(frag, 8, size)
        atomic = (_be(ring, at + 2, 2) & np.uint64(0xFFF9)) == 0  # offset 0, M clear
        ok &= ~(walk & frag & ~atomic)
        off = np.where(walk, off + size, off)
        proto = np.where(walk, nxt, proto)
    ok &= ~np.isin(proto, _WALK) & (off <= end)
    return ok, proto, off


@dataclass
class Tcp6Block:
    """TCP segments of one block, one entry per selected frame (`idx` into the block's arrays)."""

    idx: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    hlim: np.ndarray
    tc: np.ndarray
    flow: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    window: np.ndarray
    tcp_off: np.ndarray  # offset of the TCP header in the ring (options: tcp_off + 20 ...)


def tcp6(ring: np.ndarray, starts: np.ndarray, lens: np.ndarray, max_ext: int = 8) -> Tcp6Block:
    ok, proto, off = transport(ring, starts, lens, max_ext)
    sel = ok & (proto == 6) & (off + 20 <= starts + lens)
    idx = np.nonzero(sel)[0]
    o, t = starts[idx], off[idx]
    u32 = np.uint32
    vtf = _be(ring, o + ETH, 4)
    return Tcp6Block(
        idx=idx,
        src_hi=_be(ring, o + ETH + 8, 8), src_lo=_be(ring, o + ETH + 16, 8),
        hlim=ring[o + ETH + 7].copy(),
        tc=((vtf >> np.uint64(20)) & np.uint64(0xFF)).astype(np.uint8),
        flow=(vtf & np.uint64(0xFFFFF)).astype(u32),
        sport=_be(ring, t, 2).astype(u32), dport=_be(ring, t + 2, 2).astype(u32),
        seq=_be(ring, t + 4, 4).astype(u32), ack=_be(ring, t + 8, 4).astype(u32),
        flags=ring[t + 13].copy(), window=_be(ring, t + 14, 2).astype(u32), tcp_off=t,
    )


def icmp6_frames(ring: np.ndarray, starts: np.ndarray, lens: np.ndarray, max_ext: int = 8) -> np.ndarray:
    """Indices of ICMPv6 frames: rare on a scan (errors, echo replies, ND), so callers hand them
    to the per-frame decoder, as the IPv4 bulk path does with ICMP."""
    ok, proto, _ = transport(ring, starts, lens, max_ext)
    return np.nonzero(ok & (proto == IPPROTO_ICMPV6))[0]


class Addr6Index:
    """Sorted 128-bit addresses for vectorised lookup of a reply's source (the IPv6 form of the
    searchsorted array the IPv4 bulk path keeps).

    The halves are first folded into one uint64 (hi ^ lo * an odd constant), so the search is a
    plain uint64 searchsorted; a hit is then confirmed on both halves, so a fold collision can
    only cost a miss, never a wrong match. When two indexed addresses fold alike (never seen, but
    possible), the index falls back to a search over (hi, lo) records."""

    _MUL = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, hi: np.ndarray, lo: np.ndarray):
        hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
        self.hi, self.lo = hi, lo
        folded = self._fold(hi, lo)
        self.order = np.argsort(folded, kind="stable")
        self.folded = folded[self.order]
        self.exact = len(np.unique(self.folded)) == len(self.folded)
        keys = np.empty(len(hi), ADDR6)
        keys["hi"], keys["lo"] = hi, lo
        self.rorder = np.argsort(keys, order=("hi", "lo"), kind="stable")
        self.keys = keys[self.rorder]

    @classmethod
    def _fold(cls, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.asarray(hi, np.uint64) ^ (np.asarray(lo, np.uint64) * cls._MUL)

    def lookup(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Position in the original arrays of each (hi, lo), or -1 when not indexed."""
        if not len(self.folded):
            return np.full(len(hi), -1, np.int64)
        hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
        if self.exact:
            f = self._fold(hi, lo)
            k = np.searchsorted(self.folded, f)
            k[k >= len(self.folded)] = 0
            pos = self.order[k]
            hit = (self.folded[k] == f) & (self.hi[pos] == hi) & (self.lo[pos] == lo)
            return np.where(hit, pos, -1).astype(np.int64)
        q = np.empty(len(hi), ADDR6)
        q["hi"], q["lo"] = hi, lo
        k = np.searchsorted(self.keys, q)
        k[k >= len(self.keys)] = 0
        hit = (self.keys["hi"][k] == q["hi"]) & (self.keys["lo"][k] == q["lo"])
        return np.where(hit, self.rorder[k], -1).astype(np.int64)
