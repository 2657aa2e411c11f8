"""Expected calibration error, shared by the OS-detection benchmark and the DB self-check."""

from __future__ import annotations


def _bins(pairs: list[tuple[float, bool]], bins: int) -> list[tuple[float, float, list[tuple[float, bool]]]]:
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inb = [(c, ok) for c, ok in pairs if (lo <= c < hi) or (b == bins - 1 and c == 1.0)]
        out.append((lo, hi, inb))
    return out


def ece(pairs: list[tuple[float, bool]], bins: int = 10) -> float:
    """Sum over equal-width confidence bins of |share right - mean confidence|, weighted by the bin's
    share of the predictions (a 90 % verdict should be right 90 % of the time)."""
    if not pairs:
        return float("nan")
    total = 0.0
    for _lo, _hi, inb in _bins(pairs, bins):
        if inb:
            acc = sum(ok for _, ok in inb) / len(inb)
            conf = sum(c for c, _ in inb) / len(inb)
            total += len(inb) / len(pairs) * abs(acc - conf)
    return total


def reliability(pairs: list[tuple[float, bool]], bins: int = 10) -> list[tuple[float, float, int, float, float]]:
    """(low, high, count, mean confidence, share right) per non-empty bin."""
    return [(lo, hi, len(inb), sum(c for c, _ in inb) / len(inb), sum(ok for _, ok in inb) / len(inb))
            for lo, hi, inb in _bins(pairs, bins) if inb]
