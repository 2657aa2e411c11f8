"""-f / --mtu: probes cut into IP fragments after they are crafted, as nmap's -f sends them.

Why after crafting: every technique builds its probe whole (checksums and cookies over the whole
transport segment), and the cut is the same for all of them, so one function serves the bulk
scans' numpy rows and the techniques that build frames one by one. IPv4 (RFC 791 §3.2): the IP
payload in `size`-byte pieces (a multiple of 8), MF on all but the last, the IP header (ID, TTL,
DF as crafted) copied into each with its own length and checksum. IPv6 (RFC 8200 §4.5): a
Fragment header after the fixed header (templates carry no other extension header), the same
32-bit identification on every piece. The target reassembles before its TCP/UDP/ICMP code runs,
so replies and their cookies are those of the unfragmented probe.
"""

from __future__ import annotations

import numpy as np

ETH = 14
ETH_IPV4 = b"\x08\x00"
ETH_IPV6 = b"\x86\xdd"
IPPROTO_FRAGMENT = 44


def pieces(payload: int, size: int) -> int:
    """How many fragments a `payload`-byte IP payload makes."""
    return max(1, -(-payload // size))


def _fold(s: np.ndarray) -> np.ndarray:
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def fragment_rows(src: np.ndarray, n: int, length: int, out: np.ndarray, size: int = 8,
                  ident: np.ndarray | None = None) -> np.ndarray:
    """Cut rows 0..n-1 of `src` (Ethernet frames of `length` bytes, all IPv4 or all IPv6, as a
    template writes them) into fragments written to rows of `out`, probe after probe; returns each
    fragment row's length (so len(result) rows of `out` are used). `ident`: IPv6 identifications
    per probe (default: the bytes of the TCP/UDP header after the ports, i.e. the cookie)."""
    if size <= 0 or size % 8:
        raise ValueError("fragment size must be a positive multiple of 8")
    six = bool(src[0, 12] == 0x86 and src[0, 13] == 0xDD)
    hdr = ETH + (40 if six else (int(src[0, ETH]) & 15) * 4)
    payload = length - hdr
    nfr = pieces(payload, size)
    k = n * nfr
    extra = 8 if six else 0
    rows = out[:k]
    rows[:, :hdr] = np.repeat(src[:n, :hdr], nfr, axis=0)
    lens = np.empty(nfr, np.int64)
    if six:
        if ident is None:
            ident = ((src[:n, hdr + 4].astype(np.uint64) << 24) | (src[:n, hdr + 5].astype(np.uint64) << 16)
                     | (src[:n, hdr + 6].astype(np.uint64) << 8) | src[:n, hdr + 7])
        idn = np.repeat(np.asarray(ident, np.uint64), nfr)
        rows[:, hdr] = np.repeat(src[:n, ETH + 6], nfr)  # the Fragment header's next header: the original
        rows[:, hdr + 1] = 0
        for b in range(4):
            rows[:, hdr + 4 + b] = (idn >> np.uint64(24 - 8 * b)) & np.uint64(0xFF)
        rows[:, ETH + 6] = IPPROTO_FRAGMENT
    for j in range(nfr):
        a = hdr + j * size
        b = min(a + size, length)
        piece = b - a
        sel = rows[j::nfr]
        sel[:, hdr + extra:hdr + extra + piece] = src[:n, a:b]
        lens[j] = hdr + extra + piece
        more = j < nfr - 1
        off = j * size // 8
        if six:
            plen = extra + piece
            sel[:, ETH + 4] = plen >> 8
            sel[:, ETH + 5] = plen & 0xFF
            fo = off << 3 | int(more)
            sel[:, hdr + 2] = fo >> 8
            sel[:, hdr + 3] = fo & 0xFF
        else:
            total = hdr - ETH + piece
            sel[:, ETH + 2] = total >> 8
            sel[:, ETH + 3] = total & 0xFF
            sel[:, ETH + 6] = (src[:n, ETH + 6] & 0x40) | (0x20 if more else 0) | (off >> 8)
            sel[:, ETH + 7] = off & 0xFF
    if not six:  # each fragment's own header checksum
        ihl = hdr - ETH
        rows[:, ETH + 10:ETH + 12] = 0
        h = rows[:, ETH:hdr].astype(np.uint64)
        s = ((h[:, 0:ihl:2] << np.uint64(8)) | h[:, 1:ihl:2]).sum(axis=1)
        c = _fold(s)
        rows[:, ETH + 10] = c >> np.uint64(8)
        rows[:, ETH + 11] = c & np.uint64(0xFF)
    return np.tile(lens, n)


def fragment_frame(frame: bytes, size: int = 8) -> list[bytes]:
    """One crafted IPv4 or IPv6 Ethernet frame as its fragments (one frame when its IP payload
    fits in one piece; frames of other types unchanged)."""
    if frame[12:14] not in (ETH_IPV4, ETH_IPV6) or len(frame) < ETH + 20:
        return [frame]
    six = frame[12:14] == ETH_IPV6
    hdr = ETH + (40 if six else (frame[ETH] & 15) * 4)
    if six and frame[ETH + 6] in (0, 43, 44, 60, 51, 50):
        return [frame]  # an extension chain of its own: left as crafted
    if len(frame) - hdr <= size:
        return [frame]
    src = np.frombuffer(frame, np.uint8).reshape(1, -1)
    out = np.zeros((pieces(len(frame) - hdr, size), hdr + 8 + size), np.uint8)
    lens = fragment_rows(src, 1, len(frame), out, size)
    return [out[i, :int(ln)].tobytes() for i, ln in enumerate(lens.tolist())]
