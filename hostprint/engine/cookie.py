"""Stateless probe validation: a probe's identity lives in the bits the reply must echo back.

As zmap does, the sequence number (or ICMP id/seq, or source port) of each probe is a keyed hash of
(destination address, destination port, source port), so a reply is checked by recomputing the hash
from the reply's own addresses and ports: no per-probe table, and stray or spoofed packets (which
cannot know the per-run key) are dropped. The mixer is a 64-bit multiply-xorshift (splitmix64
finaliser), written once for Python ints and once for numpy arrays so that bulk crafting and
per-packet checks agree bit for bit. It is not cryptographic; it only has to make a random reply
match with probability 2**-32.

IPv6: the mixer's input is 64 bits, of which the address takes 32, so a 128-bit address is first
folded to 32 bits *with the key* (two rounds of the same mixer over its halves), then used where
an IPv4 address goes. Keying the fold matters: an unkeyed fold would let someone who knows it pick
two addresses with the same cookie. IPv4 values are untouched (the fold is a separate entry point).
"""

from __future__ import annotations

import os

import numpy as np

_M64 = (1 << 64) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_V6 = 0xD6E8FEB86659FD93  # separates the fold's key from the cookie's


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * _C1) & _M64
    x = ((x ^ (x >> 27)) * _C2) & _M64
    return x ^ (x >> 31)


def _mix_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_C1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_C2)
    return x ^ (x >> np.uint64(31))


def split128(addr: int | bytes | str) -> tuple[int, int]:
    """(high, low) 64-bit halves of an IPv6 address given as int, 16 bytes or text."""
    if isinstance(addr, str):
        import socket

        addr = socket.inet_pton(socket.AF_INET6, addr)
    if isinstance(addr, (bytes, bytearray, memoryview)):
        addr = int.from_bytes(bytes(addr), "big")
    return addr >> 64 & _M64, addr & _M64


def halves(addrs: list[bytes] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 (high, low) arrays from 16-byte addresses (a list, or an (n, 16) uint8 array)."""
    a = np.asarray(addrs if isinstance(addrs, np.ndarray) else [np.frombuffer(bytes(x), np.uint8) for x in addrs],
                   np.uint8).reshape(-1, 16)
    be = np.ascontiguousarray(a).view(">u8")
    return be[:, 0].astype(np.uint64), be[:, 1].astype(np.uint64)


class Cookie:
    def __init__(self, key: int | None = None):
        self.key = key if key is not None else int.from_bytes(os.urandom(8), "little")

    def __call__(self, addr: int, dport: int, sport: int, salt: int = 0) -> int:
        """32-bit cookie for a probe to `addr`:`dport` from `sport` (salt separates probe kinds)."""
        x = ((addr << 32) | (dport << 16) | sport) ^ self.key ^ (salt * 0x9E3779B97F4A7C15 & _M64)
        x &= _M64
        x = ((x ^ (x >> 30)) * _C1) & _M64
        x = ((x ^ (x >> 27)) * _C2) & _M64
        x ^= x >> 31
        return x >> 32

    def batch(self, addr: np.ndarray, dport: np.ndarray, sport: np.ndarray, salt: int = 0) -> np.ndarray:
        """The same function over arrays (uint32 result)."""
        x: np.ndarray = ((addr.astype(np.uint64) << np.uint64(32)) | (dport.astype(np.uint64) << np.uint64(16))
                         | sport.astype(np.uint64))
        x ^= np.uint64(self.key ^ (salt * 0x9E3779B97F4A7C15 & _M64))
        with np.errstate(over="ignore"):
            x = (x ^ (x >> np.uint64(30))) * np.uint64(_C1)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(_C2)
        x ^= x >> np.uint64(31)
        return (x >> np.uint64(32)).astype(np.uint32)

    # ------------------------------------------------------------------ IPv6

    def fold6(self, addr: int | bytes | str) -> int:
        """A keyed 32-bit digest of a 128-bit address: what stands in for the address in v6()."""
        hi, lo = split128(addr)
        k = self.key ^ _V6
        return _mix(_mix(hi ^ k) ^ lo) >> 32

    def fold6_batch(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        k = np.uint64(self.key ^ _V6)
        x = _mix_np(_mix_np(hi.astype(np.uint64) ^ k) ^ lo.astype(np.uint64))
        return (x >> np.uint64(32)).astype(np.uint32)

    def v6(self, addr: int | bytes | str, dport: int, sport: int, salt: int = 0) -> int:
        """32-bit cookie for a probe to an IPv6 `addr` (int, 16 bytes or text)."""
        return self(self.fold6(addr), dport, sport, salt)

    def batch6(self, hi: np.ndarray, lo: np.ndarray, dport: np.ndarray, sport: np.ndarray,
               salt: int = 0) -> np.ndarray:
        """v6() over arrays: addresses as uint64 halves (see `halves`)."""
        return self.batch(self.fold6_batch(hi, lo), dport, sport, salt)


class FastCookie:
    """A cheaper two-stage form for bulk scans where every reply is checked in Python: the keyed
    hash above is computed once per target address (`host_key`), and each probe's value is a
    multiply-mix of that key with its ports, i.e. one dict lookup, one xor and one multiply per
    reply instead of the full mixer."""

    MUL = 0x9E3779B1

    def __init__(self, cookie: Cookie | None = None, salt: int = 0):
        self.cookie = cookie or Cookie()
        self.salt = salt

    def host_key(self, addr: int) -> int:
        return self.cookie(addr, 0, 0, self.salt)

    def host_key6(self, addr: int | bytes | str) -> int:
        """host_key for an IPv6 address; value()/batch() are then the same for both families."""
        return self.cookie.v6(addr, 0, 0, self.salt)

    def host_keys6(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        z = np.zeros(len(hi), np.uint64)
        return self.cookie.batch6(hi, lo, z, z, self.salt).astype(np.uint64)

    def value(self, hkey: int, dport: int, sport: int) -> int:
        return ((hkey ^ ((dport << 16) | sport)) * self.MUL) & 0xFFFFFFFF

    def batch(self, hkeys: np.ndarray, dport: np.ndarray, sport: np.ndarray) -> np.ndarray:
        x = hkeys.astype(np.uint64) ^ ((dport.astype(np.uint64) << np.uint64(16)) | sport.astype(np.uint64))
        return ((x * np.uint64(self.MUL)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
