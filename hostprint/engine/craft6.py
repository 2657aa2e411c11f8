"""Bulk crafting of IPv6 probes: the numpy templates of craft.py for 128-bit destinations.

IPv6 has no header checksum, so per frame only the transport checksum changes, and its pseudo-header
part is the sum of the destination's eight 16-bit words: computed from the address's two uint64
halves (the form cookie.halves gives and the IPv6 block parser returns), with no per-frame Python.
The flow label is per frame too when given, because stacks and middleboxes hash it (nmap fixes it
at 0x12345; a scan may want one label per flow).
"""

from __future__ import annotations

import struct

import numpy as np

from hostprint.engine.checksum import inet_sum
from hostprint.engine.craft import _put16, _put32
from hostprint.engine.ipv6 import ip6_bytes
from hostprint.engine.packets import IPPROTO_TCP, IPPROTO_UDP, OPT_MSS, encode_tcp_options

ETH, IP6 = 14, 40
U64 = np.uint64
_M16 = U64(0xFFFF)


def _words_sum(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Sum of the eight big-endian 16-bit words of addresses given as uint64 halves."""
    s = np.zeros(len(hi), U64)
    for half in (hi.astype(U64), lo.astype(U64)):
        for sh in (48, 32, 16, 0):
            s += (half >> U64(sh)) & _M16
    return s


def _put64(buf: np.ndarray, off: int, v: np.ndarray) -> None:
    _put32(buf, off, v >> U64(32))
    _put32(buf, off + 4, v & U64(0xFFFFFFFF))


class _Template6:
    def _head(self, src_mac: bytes, src: bytes, proto: int, l4_len: int, hlim: int, tc: int, flow: int) -> bytearray:
        self.length = ETH + IP6 + l4_len
        row = bytearray(self.length)
        row[6:12] = src_mac
        row[12:14] = b"\x86\xdd"
        struct.pack_into("!IHBB16s16s", row, ETH, 6 << 28 | (tc & 0xFF) << 20 | (flow & 0xFFFFF), l4_len, proto,
                         hlim, src, bytes(16))
        return row

    @staticmethod
    def _common(b: np.ndarray, dst_mac: np.ndarray, hi: np.ndarray, lo: np.ndarray, flow: np.ndarray | None,
                tc: int) -> None:
        b[:, 0:6] = dst_mac
        _put64(b, ETH + 24, hi.astype(U64))
        _put64(b, ETH + 32, lo.astype(U64))
        if flow is not None:
            _put32(b, ETH, U64(6 << 28 | (tc & 0xFF) << 20) | (flow.astype(U64) & U64(0xFFFFF)))


class Tcp6Template(_Template6):
    """TCP probes over IPv6 that differ only in destination, ports, seq/ack (and flow label)."""

    def __init__(self, src_mac: bytes, src_ip: str, *, flags: int, window: int = 1024, options: list | None = None,
                 hlim: int = 64, tc: int = 0, flow: int = 0, payload: bytes = b"", urg: int = 0):
        self.options = encode_tcp_options(options if options is not None else [(OPT_MSS, 1440)])
        self.tcp_len = 20 + len(self.options) + len(payload)
        self.tc = tc
        src = ip6_bytes(src_ip)
        row = self._head(src_mac, src, IPPROTO_TCP, self.tcp_len, hlim, tc, flow)
        t = ETH + IP6
        struct.pack_into("!HHIIBBHHH", row, t, 0, 0, 0, 0, (20 + len(self.options)) // 4 << 4, flags, window, 0, urg)
        row[t + 20: t + 20 + len(self.options)] = self.options
        row[t + 20 + len(self.options):] = payload
        self.row = np.frombuffer(bytes(row), np.uint8)
        # pseudo-header without the destination, plus the TCP header with zero ports/seq/ack
        self.tcp_base = inet_sum(src) + IPPROTO_TCP + self.tcp_len + inet_sum(bytes(row[t:]))

    def fill(self, buf: np.ndarray, dst_mac: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray, sport: np.ndarray,
             dport: np.ndarray, seq: np.ndarray, ack: np.ndarray, flow: np.ndarray | None = None) -> int:
        """Write len(dst_hi) frames into rows of `buf`; `dst_mac` is (n, 6) uint8. Returns n."""
        n = len(dst_hi)
        b = buf[:n]
        b[:, :self.length] = self.row
        self._common(b, dst_mac, dst_hi, dst_lo, flow, self.tc)
        t = ETH + IP6
        sp, dp, sq, ak = sport.astype(U64), dport.astype(U64), seq.astype(U64), ack.astype(U64)
        _put16(b, t, sp)
        _put16(b, t + 2, dp)
        _put32(b, t + 4, sq)
        _put32(b, t + 8, ak)
        s = (U64(self.tcp_base) + _words_sum(dst_hi, dst_lo) + sp + dp + (sq >> U64(16)) + (sq & _M16)
             + (ak >> U64(16)) + (ak & _M16))
        _put16(b, t + 16, _csum(s))
        return n


class Udp6Template(_Template6):
    """UDP probes over IPv6 with a fixed payload."""

    def __init__(self, src_mac: bytes, src_ip: str, payload: bytes = b"", hlim: int = 64, tc: int = 0, flow: int = 0):
        self.udp_len = 8 + len(payload)
        self.tc = tc
        src = ip6_bytes(src_ip)
        row = self._head(src_mac, src, IPPROTO_UDP, self.udp_len, hlim, tc, flow)
        struct.pack_into("!HHHH", row, ETH + IP6, 0, 0, self.udp_len, 0)
        row[ETH + IP6 + 8:] = payload
        self.row = np.frombuffer(bytes(row), np.uint8)
        self.udp_base = inet_sum(src) + IPPROTO_UDP + self.udp_len + inet_sum(bytes(row[ETH + IP6:]))

    def fill(self, buf: np.ndarray, dst_mac: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray, sport: np.ndarray,
             dport: np.ndarray, flow: np.ndarray | None = None) -> int:
        n = len(dst_hi)
        b = buf[:n]
        b[:, :self.length] = self.row
        self._common(b, dst_mac, dst_hi, dst_lo, flow, self.tc)
        sp, dp = sport.astype(U64), dport.astype(U64)
        _put16(b, ETH + IP6, sp)
        _put16(b, ETH + IP6 + 2, dp)
        c = _csum(U64(self.udp_base) + _words_sum(dst_hi, dst_lo) + sp + dp)
        _put16(b, ETH + IP6 + 6, np.where(c == 0, U64(0xFFFF), c))  # zero is "no checksum", illegal over IPv6
        return n


def _csum(s: np.ndarray) -> np.ndarray:
    """Fold a 64-bit sum to 16 bits and invert. Four folds, not craft.py's two: an IPv6 sum
    (sixteen address words on top of the header and payload) is not bounded by 2**32."""
    for _ in range(4):
        s = (s & _M16) + (s >> U64(16))
    return (~s) & _M16
