"""Stateless probe validation: a probe's identity lives in the bits the reply must echo back.

As zmap does, the sequence number (or ICMP id/seq, or source port) of each probe is a keyed hash of
(destination address, destination port, source port), so a reply is checked by recomputing the hash
from the reply's own addresses and ports: no per-probe table, and stray or spoofed packets (which
cannot know the per-run key) are dropped. The mixer is a 64-bit multiply-xorshift (splitmix64
finaliser), written once for Python ints and once for numpy arrays so that bulk crafting and
per-packet checks agree bit for bit. It is not cryptographic; it only has to make a random reply
match with probability 2**-32.
"""

from __future__ import annotations

import os

import numpy as np

_M64 = (1 << 64) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


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

    def value(self, hkey: int, dport: int, sport: int) -> int:
        return ((hkey ^ ((dport << 16) | sport)) * self.MUL) & 0xFFFFFFFF

    def batch(self, hkeys: np.ndarray, dport: np.ndarray, sport: np.ndarray) -> np.ndarray:
        x = hkeys.astype(np.uint64) ^ ((dport.astype(np.uint64) << np.uint64(16)) | sport.astype(np.uint64))
        return ((x * np.uint64(self.MUL)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
