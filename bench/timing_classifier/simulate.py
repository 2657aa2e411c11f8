"""The benchmark's environment simulator: turns held-out Hershel+ samples into noisy observations.

Protocol (issue #3, details and the choices made where it is silent are in README.md):
per host a delay T ~ Erlang-2, per packet an exponential one-way delay, FIFO order, independent
loss of every packet (first SYN-ACK and final RST included), and each header field replaced with
probability pi by a value drawn from the Internet frequencies in ../shared/datasets/hershel/faulds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hostprint.match.timing import TimingObservation
from hostprint.signatures.timing_db import HershelRow, decode_options, rst_decode, rst_win3


@dataclass
class NoiseLevel:
    name: str
    host_delay_mean: float  # Erlang-2 mean (s)
    packet_delay_mean: float  # exponential mean (s)
    loss: float
    header_change: float


LEVELS = [
    NoiseLevel("delays only", 0.1, 0.05, 0.0, 0.0),
    NoiseLevel("mild", 0.1, 0.05, 0.02, 0.05),
    NoiseLevel("Hershel+ defaults", 0.5, 0.5, 0.038, 0.10),
    NoiseLevel("harsh", 0.5, 0.5, 0.10, 0.20),
]

TTLS = (32, 64, 128, 255)


def _read_vals(path: Path, conv=int) -> tuple[np.ndarray, np.ndarray]:
    """`value, cumulative probability` lines -> (values, probabilities)."""
    vals, cdf = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        a, b = line.split(",")
        vals.append(conv(a.strip()))
        cdf.append(float(b))
    c = np.asarray(cdf)
    p = np.diff(np.r_[0.0, c])
    p = np.clip(p, 0, None)
    return np.asarray(vals, dtype=object), p / p.sum()


class HeaderNoise:
    """Draws replacement header values with the frequencies Faulds measured on the Internet."""

    def __init__(self, faulds_dir: Path):
        self.win = _read_vals(faulds_dir / "winvals.txt")
        self.mss = _read_vals(faulds_dir / "mssvals.txt")
        opts, p = _read_vals(faulds_dir / "optvals.txt")
        self.opt = (np.asarray([decode_options(int(o)) for o in opts], dtype=object), p)
        self.rst = _read_vals(faulds_dir / "rstvals.txt")

    @staticmethod
    def _draw(rng: np.random.Generator, table, current):
        vals, p = table
        for _ in range(100):
            v = vals[rng.choice(len(vals), p=p)]
            if v != current:
                return v
        return current

    def apply(self, rng: np.random.Generator, h: dict, pi: float) -> dict:
        h = dict(h)
        if pi <= 0:
            return h
        if rng.random() < pi:
            h["window"] = int(self._draw(rng, self.win, h["window"]))
        if rng.random() < pi:
            h["ttl"] = int(rng.choice([t for t in TTLS if t != h["ttl"]]))
        if rng.random() < pi:
            h["df"] = 1 - h["df"]
        if rng.random() < pi:
            h["options"] = str(self._draw(rng, self.opt, h["options"]))
        if rng.random() < pi:
            h["mss"] = int(self._draw(rng, self.mss, h["mss"]))
        if rng.random() < pi:
            h["rst"] = int(self._draw(rng, self.rst, h["rst"]))
        return h


def perturb(row: HershelRow, level: NoiseLevel, rng: np.random.Generator, noise: HeaderNoise,
            obs_id: str | None = None) -> TimingObservation:
    """One noisy observation of a DB sample (times since the SYN; Hershel convention for the RST)."""
    t = row.times
    n = len(t)
    T = rng.gamma(2.0, level.host_delay_mean / 2.0)
    arr = np.maximum.accumulate(T + t + rng.exponential(level.packet_delay_mean, n))
    while True:  # a probe that received nothing has no observation to classify: redraw
        keep = rng.random(n) >= level.loss
        if keep.any():
            break
    rst_code_ = (row.rst_present << 4) | (row.rst_ack << 3) | (rst_win3(row.rst_window, row.window) << 1) | row.rst_nonzero
    if row.rst_present and not keep[-1]:
        rst_code_ = 0  # the RST itself was lost: the prober saw no RST
    h = {"window": row.window, "ttl": row.ttl, "df": row.df, "options": row.options, "mss": row.mss,
         "rst": rst_code_}
    h = noise.apply(rng, h, level.header_change)
    present, ack, w3, nz = rst_decode(h["rst"])
    rst_win = 0 if w3 == 0 else (h["window"] if w3 == 1 else (h["window"] + 1) % 65536 or 1)
    times = arr[keep].tolist()
    rst_time = times.pop() if present and times else None
    return TimingObservation(arrivals=times, rst_time=rst_time, window=h["window"], ttl=h["ttl"], df=h["df"],
                             options=h["options"], mss=h["mss"], rst=bool(present), rst_ack=ack, rst_win=rst_win,
                             rst_nonzero=nz, obs_id=obs_id)
