"""Rate control and nmap's timing templates (-T0..5).

Template numbers are nmap's documented equivalents (nmap(1), "Timing and Performance"): initial,
minimum and maximum RTT timeouts, maximum retransmissions and scan delay. hostprint adds a default
packet rate per template, because it sends in batches rather than nmap's congestion window; the
rate is lowered when retransmission rounds show that replies were lost (see probes/portscan.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from hostprint.errors import UsageError


@dataclass(frozen=True)
class Timing:
    name: str
    initial_rtt: float  # seconds
    min_rtt: float
    max_rtt: float
    max_retries: int
    scan_delay: float  # seconds between probes (serialises T0-T2)
    rate: float  # default packets/s

    def with_overrides(self, *, min_rate: float | None = None, max_rate: float | None = None,
                       max_retries: int | None = None) -> "Timing":
        t = self
        if max_retries is not None:
            t = replace(t, max_retries=max_retries)
        rate = t.rate
        if max_rate is not None:
            rate = min(rate, max_rate) if t.scan_delay == 0 else max_rate
        if min_rate is not None:
            rate = max(rate, min_rate)
        return replace(t, rate=rate)


TEMPLATES = {
    0: Timing("paranoid", 300.0, 0.1, 300.0, 10, 300.0, 1 / 300),
    1: Timing("sneaky", 15.0, 0.1, 15.0, 10, 15.0, 1 / 15),
    2: Timing("polite", 1.0, 0.1, 10.0, 10, 0.4, 2.5),
    # Rates for T3-T5 are ceilings above what one target kernel answered here (~350 k/s through
    # the lab's bridge): the link, not the pacer, sets the pace, and loss halves the rate.
    3: Timing("normal", 1.0, 0.1, 10.0, 10, 0.0, 300_000),
    4: Timing("aggressive", 0.5, 0.1, 1.25, 6, 0.0, 1_000_000),
    5: Timing("insane", 0.25, 0.05, 0.3, 2, 0.0, 2_000_000),
}
NAMES = {t.name: k for k, t in TEMPLATES.items()}


#: The slowest rate accepted: one packet per 300 s, -T0's pace (1e-300 pps would never end).
MIN_RATE = 1 / 300


def check_rates(min_rate: float | None, max_rate: float | None) -> None:
    """--min-rate / --max-rate: finite, at least MIN_RATE, and min <= max (UsageError naming them)."""
    import math

    for name, v in (("--min-rate", min_rate), ("--max-rate", max_rate)):
        if v is None:
            continue
        if not math.isfinite(v):
            raise UsageError(f"bad {name} '{v}': must be a finite number of packets per second")
        if v <= 0:
            raise UsageError(f"bad {name} '{v:g}': must be > 0")
        if v < MIN_RATE:
            raise UsageError(f"bad {name} '{v:g}': below {MIN_RATE:.4f} packets/s (one per 300 s, -T0's pace)")
    if min_rate is not None and max_rate is not None and min_rate > max_rate:
        raise UsageError(f"--min-rate {min_rate:g} is above --max-rate {max_rate:g}")


def template(spec: str | int) -> Timing:
    s = str(spec).lower()
    if s.isdigit() and int(s) in TEMPLATES:
        return TEMPLATES[int(s)]
    if s in NAMES:
        return TEMPLATES[NAMES[s]]
    raise UsageError(f"bad timing template '{spec}': use 0-5 or paranoid|sneaky|polite|normal|aggressive|insane")


class Pacer:
    """Token bucket that releases packets in slices of at least 1 ms.

    Releasing one or two packets per loop turn burnt 5x the CPU at 50 k pps in the measurements
    (../shared/reference/packet-io.md §5), so callers ask for a budget and send it as one batch.
    """

    def __init__(self, rate: float, burst: int = 1024):
        self.rate = max(rate, 1e-6)
        self.burst = burst  # most packets released by one call
        self.tokens = 0.0
        self.last = time.monotonic()

    @property
    def bank(self) -> float:
        """Tokens kept across a late wake-up: 20 ms worth (at least one batch). Capping at one
        batch lost every oversleep's budget and held a 1 M/s setting to ~230 k/s."""
        return max(float(self.burst), self.rate * 0.02)

    def set_rate(self, rate: float) -> None:
        self.rate = max(rate, 1e-6)

    async def budget(self, want: int) -> int:
        """Wait until at least one packet may go; return how many may go now (<= want, <= burst)."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.tokens + (now - self.last) * self.rate, max(self.bank, 1))
            self.last = now
            if self.tokens >= 1:
                n = int(min(self.tokens, want, self.burst))
                self.tokens -= n
                return n
            need = (1 - self.tokens) / self.rate
            import asyncio  # here, not at the top: `passive` reads files without an event loop (~0.02 s)

            await asyncio.sleep(max(need, 0.001))
