"""Facts about a TCP/IP stack that several techniques read off packets: initial TTL and distance,
the IP ID class, ISN statistics, TCP timestamp clocks and the uptime they reveal.

One home for each rule: they were written five, two, two and three times with small
differences (two IP ID classifiers disagreed on constant IDs). Pure functions on numbers, on the
floor of model/engine so that probes, matchers and signature readers all use the same ones.
Definitions follow nmap's documented ones where nmap has the attribute (nmap book, "TCP/IP
Fingerprinting Methods Supported by Nmap": TI/CI/II, GCD, ISR, SP) and p0f's for clocks
(p0f 3 config.h: clock rates 0.7-1500 Hz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Initial TTLs stacks use in practice (Linux/BSD 64, Windows 128, network gear 255, old stacks 32).
INITIAL_TTLS = (32, 64, 128, 255)


def initial_ttl(ttl: int) -> int:
    """The initial TTL an observed TTL most likely started from (the nearest one above it)."""
    return next((t for t in INITIAL_TTLS if ttl <= t), 255)


def distance(ttl: int) -> int:
    """nmap's network distance from a reply TTL: hops + 1 (a neighbour on the link is 1)."""
    return initial_ttl(ttl) - ttl + 1


def ip_id_class(ids: list[int]) -> str | None:
    """nmap's TI/CI/II class of a series of IP IDs: Z all zero; a constant value as its hex
    (nmap writes the value); RD a jump >= 20000; BI steps that are multiples of 256 (<= 5120,
    broken little-endian); I steps < 10; RI increments >= 1000 that are not multiples of 256;
    None when fewer than two IDs or no class fits."""
    if len(ids) < 2:
        return None
    if all(i == 0 for i in ids):
        return "Z"
    if len(set(ids)) == 1:
        return "%X" % ids[0]
    diffs = [(b - a) & 0xFFFF for a, b in zip(ids, ids[1:])]
    if any(d >= 20000 for d in diffs):
        return "RD"
    if all(d % 256 == 0 and 0 < d <= 5120 for d in diffs):
        return "BI"
    if all(d < 10 for d in diffs):
        return "I"
    if any(d >= 1000 and d % 256 for d in diffs):
        return "RI"
    return None


#: nmap's words for the IP ID classes in its XML/normal output ("IP ID sequence generation").
IP_ID_WORDS = {"Z": "All zeros", "I": "Incremental", "BI": "Broken little-endian incremental",
               "RI": "Randomized", "RD": "Randomized"}


def ip_id_words(cls: str | None) -> str:
    if cls is None:
        return "Busy server or unknown class"
    return IP_ID_WORDS.get(cls, f"Constant {cls}" if all(c in "0123456789ABCDEF" for c in cls) else cls)


@dataclass(frozen=True)
class IsnStats:
    """nmap's SEQ numbers: GCD of the ISN steps, ISR (8 x log2 of the average ISN rate per
    second) and SP (8 x log2 of the rates' standard deviation, over the GCD when it is > 9)."""

    gcd: int
    isr: int
    sp: int
    rate_per_s: float


def isn_stats(isns: list[int], times: list[float]) -> IsnStats | None:
    """From the ISNs of several SYN-ACKs and the times their SYNs were sent (seconds)."""
    if len(isns) < 2 or len(times) != len(isns):
        return None
    diffs = [(b - a) & 0xFFFFFFFF for a, b in zip(isns, isns[1:])]
    diffs = [d if d <= 1 << 31 else (1 << 32) - d for d in diffs]
    g = 0
    for d in diffs:
        g = math.gcd(g, d)
    rates = [d / max(t2 - t1, 1e-3) for d, t1, t2 in zip(diffs, times, times[1:])]
    avg = sum(rates) / len(rates)
    sp = 0
    div = g if g > 9 else 1
    if len(rates) > 1:
        m = sum(r / div for r in rates) / len(rates)
        sd = math.sqrt(sum((r / div - m) ** 2 for r in rates) / (len(rates) - 1))
        sp = round(8 * math.log2(sd)) if sd > 1 else 0
    isr = round(8 * math.log2(avg)) if avg >= 1 else 0
    return IsnStats(g, isr, sp, round(avg, 1))


#: Slack when asking whether two TCP timestamps sit on one clock: 5 % of the elapsed ticks plus
#: 100 ticks (SYN cookies keep option bits in TSval's low 6 bits; a random 32-bit offset lands
#: this close with odds of about 1 in 20 million).
CLOCK_SLACK = 0.05
CLOCK_TICKS = 100


def on_clock(t0: float, v0: int, t: float, v: int, rate: float) -> bool:
    """Does TSval v at time t continue the clock that read v0 at t0, ticking `rate` Hz?"""
    d = abs(((v - v0 - rate * (t - t0)) + (1 << 31)) % (1 << 32) - (1 << 31))
    return d <= CLOCK_SLACK * rate * abs(t - t0) + CLOCK_TICKS


#: Clock rates a real stack uses (p0f config.h MIN_TSCALE/MAX_TSCALE).
CLOCK_MIN_HZ, CLOCK_MAX_HZ = 0.7, 1500.0
#: Nominal rates stacks are built with (HZ=100/250/1000 kernels, BSDs' 1 kHz, old 2 Hz stacks).
NOMINAL_HZ = (2, 100, 200, 250, 1000)


def nominal_hz(rate: float, tolerance: float = 0.2) -> int | None:
    return next((n for n in NOMINAL_HZ if abs(rate - n) / n < tolerance), None)


def uptime(tsval: int, hz: float) -> tuple[int, float]:
    """(seconds since the clock started, the counter's wrap period in days): a host clock with
    no per-connection offset counts from boot, modulo 2^32 ticks (49.7 days at 1 kHz)."""
    return round(tsval / hz), round((1 << 32) / hz / 86400, 1)
