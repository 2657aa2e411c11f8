"""Bulk probe crafting: numpy writes whole batches of frames into the sender's buffer.

A template holds everything that is the same for every probe of a scan (MACs, source address,
flags, window, options, TTL) and the one's-complement sums of those constant words; per batch, only
destination address, ports, sequence/ack, IP ID and the two checksums are written, all vectorised
(measured: ~44 M frames/s crafted, against 1.7 M/s with struct templates; packet-io.md §1).
"""

from __future__ import annotations

import socket
import struct

import numpy as np

from hostprint.engine.checksum import inet_sum
from hostprint.engine.packets import IPPROTO_TCP, OPT_MSS, encode_tcp_options

ETH, IP = 14, 20
U64 = np.uint64


def _put16(buf: np.ndarray, off: int, v: np.ndarray) -> None:
    buf[:, off] = (v >> 8) & 0xFF
    buf[:, off + 1] = v & 0xFF


def _put32(buf: np.ndarray, off: int, v: np.ndarray) -> None:
    buf[:, off] = (v >> 24) & 0xFF
    buf[:, off + 1] = (v >> 16) & 0xFF
    buf[:, off + 2] = (v >> 8) & 0xFF
    buf[:, off + 3] = v & 0xFF


def _fold(s: np.ndarray) -> np.ndarray:
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class TcpTemplate:
    """TCP probes that differ only in destination, ports, seq/ack and IP ID."""

    def __init__(self, src_mac: bytes, src_ip: str, *, flags: int, window: int = 1024,
                 options: list | None = None, ttl: int = 64, df: bool = False, payload: bytes = b"",
                 tos: int = 0):
        self.options = encode_tcp_options(options if options is not None else [(OPT_MSS, 1460)])
        self.payload = payload
        self.tcp_len = 20 + len(self.options) + len(payload)
        self.length = ETH + IP + self.tcp_len
        src = socket.inet_aton(src_ip)
        row = bytearray(self.length)
        row[6:12] = src_mac
        row[12:14] = b"\x08\x00"
        struct.pack_into("!BBHHHBBH4s4s", row, ETH, 0x45, tos, IP + self.tcp_len, 0, 0x4000 if df else 0,
                         ttl, IPPROTO_TCP, 0, src, b"\0\0\0\0")
        t = ETH + IP
        struct.pack_into("!HHIIBBHHH", row, t, 0, 0, 0, 0, (20 + len(self.options)) // 4 << 4, flags, window, 0, 0)
        row[t + 20: t + 20 + len(self.options)] = self.options
        row[t + 20 + len(self.options):] = payload
        self.row = np.frombuffer(bytes(row), np.uint8)
        # Constant parts of the sums: the whole IP header as it stands (dst, id = 0), and the pseudo
        # header (source, protocol, length) plus the TCP header with zero ports/seq/ack and payload.
        self.ip_base = inet_sum(bytes(row[ETH:ETH + IP]))
        self.tcp_base = inet_sum(src) + IPPROTO_TCP + self.tcp_len + inet_sum(bytes(row[t:]))

    def fill(self, buf: np.ndarray, dst_mac: np.ndarray, dst: np.ndarray, sport: np.ndarray,
             dport: np.ndarray, seq: np.ndarray, ack: np.ndarray, ipid: np.ndarray) -> int:
        """Write len(dst) frames into rows of `buf` (uint8, at least self.length wide).

        `dst_mac` is (n, 6) uint8; the others are 1-D integer arrays. Returns n.
        """
        n = len(dst)
        b = buf[:n]
        b[:, :self.length] = self.row
        b[:, 0:6] = dst_mac
        dst64 = dst.astype(U64)
        ipid64 = ipid.astype(U64)
        _put16(b, ETH + 4, ipid64)
        _put32(b, ETH + 16, dst64)
        dsum = (dst64 >> U64(16)) + (dst64 & U64(0xFFFF))
        _put16(b, ETH + 10, _fold(U64(self.ip_base) + dsum + ipid64))
        t = ETH + IP
        sp, dp = sport.astype(U64), dport.astype(U64)
        sq, ak = seq.astype(U64), ack.astype(U64)
        _put16(b, t, sp)
        _put16(b, t + 2, dp)
        _put32(b, t + 4, sq)
        _put32(b, t + 8, ak)
        s = (U64(self.tcp_base) + dsum + sp + dp + (sq >> U64(16)) + (sq & U64(0xFFFF))
             + (ak >> U64(16)) + (ak & U64(0xFFFF)))
        _put16(b, t + 16, _fold(s))
        return n
