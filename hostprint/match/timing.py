"""Probabilistic matching of measured retransmission schedules against timing signature classes.

Why this model (and not nearest neighbour): what the network does to a schedule is known in shape —
one per-host delay shifts every packet, each packet gets its own queueing jitter, packets get lost
(a lost retransmission makes one gap look like the sum of two), a firewall may eat the final RST,
and users/middleboxes rewrite header fields. A likelihood that models exactly these effects degrades
gracefully where distance-based matching collapses, and it yields calibrated confidences plus an
explicit "unknown stack" alternative instead of a confident wrong answer.

Model (per class c, observation with k packets x_0 < ... < x_{k-1}):
- Timing: an alignment maps the received packets to an increasing subset of the class's n packets
  (the others were lost). Relative to one reference packet the class gives every matched packet an
  offset range (its training spread, taken against the reference that makes the ranges tightest, so
  correlated variation such as old Linux's lag stays tight). Each packet's observed offset beyond
  that range is its extra one-way delay; with exponential delays and a common per-host shift the
  likelihood depends on the sum of every packet's excess over the least-delayed one (shift-invariant,
  so the per-host delay drops out). The delay scale is unknown per host: a mixture over scales; a
  wide range costs log(width) so loose classes don't win by default.
- The first received packet's delay after the SYN tells whether the first SYN-ACK was lost.
- Loss: each packet independently with probability p (a mixture over p), the final RST additionally
  dropped by middleboxes with probability `rst_drop`. Alignments are enumerated per class with at
  most `max_skip` losses before the last matched packet; observations longer than `k_max` are
  compared on their first `k_max` packets (the count still enters the loss term exactly).
- Header fields (window, initial TTL, DF, options, MSS, RST flags): with probability 1-pi the
  class's value, with probability pi anything (background frequency of the value in the DB).
- "unknown": header values from the background, gaps from a broad log-uniform density. Its prior
  is small; it wins only when no class explains the observation much better than chance.
- Packets are what they are (`strict_packets`, the default): a RST is aligned only to a class's
  final RST, never to one of its SYN-ACK / FIN slots; a RST from a class that sends none is either
  something else's (a middlebox: probability `spurious_rst`, its time from the broad density) or
  the class is wrong. Whether a RST came is judged here, by the timing model (a class's RST may be
  lost, dropped by a middlebox, or due after the listen limit); its flags (ACK, window, ACK field)
  are a header field compared only when a RST was seen.
- Right-censoring: an observation carries the time we stopped listening (`listen_s`). A class
  packet that would arrive after it was not lost, just not seen: a trailing packet whose arrival
  window (after the last observed packet, per the class's gap ranges) lies a fraction c beyond the
  limit costs c + (1 - c) p instead of p. Classes that differ only after the limit then score
  alike, and the verdict names them (`censored_ambiguous`).

Decisions on top of the posterior (each one tested, see `_verdict`):
- "unknown" also when the best class does not account for the packets: a RST it never sends, or
  gaps beyond its ranges by more than jitter explains (the summed delay excess R of its best
  alignment has tail probability < `adequacy_alpha` under exponential per-packet jitter whose mean
  is the handshake RTT, clipped to the model's jitter scales; the largest scale without an RTT).
  The nearest class and these distances are reported.
- "generic": the best class's SYN-ACK schedule is an RFC 6298 default schedule (initial RTO 1 s
  or 3 s, doubling, no RST: every gap range contains r*2^i) — any stack that took the RFC's numbers
  sends it, so the schedule alone names no OS. The class is named only when the rest of the
  evidence (header fields the class pins, against their frequency among stacks in general —
  timing_background.txt — and any LAST_ACK / FIN_WAIT1 fit against the broad density) favours it
  by a likelihood ratio of at least `generic_min_lr`; otherwise the outcome is "generic" with the
  classes the schedule is consistent with.

Everything is vectorised over the precomputed alignment variants of all classes with numpy and over
batches of observations of the same length, which is what makes thousands of observations per
second on one core possible.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple, NotRequired, Sequence, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from hostprint.signatures.timing_db import (
    HEADER_FIELDS,
    FloatArray,
    HeaderBackground,
    HeaderValue,
    Schedule,
    TimingClass,
    TimingDB,
    cronos_from_times,
    format_cronos,
    normalise_ttl,
    read_background,
    rst_code,
    rst_win3,
)

NEG = -1e30
EXTRA_PACKET_LOGP = math.log(0.01)  # one packet more than the class sends (see timing_loglik)

F32Array = npt.NDArray[np.float32]  # the scoring tables (float32 halves the memory traffic)
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class TimingObservation:
    """What one timing test measured on one target port.

    `arrivals` are seconds since our probe (SYN for "syn"; our FIN / request for the others) of
    every SYN-ACK / FIN / data+FIN segment, the first included; `rst_time` is the final RST's time
    or None. Header fields are those of the first SYN-ACK (None = not measured).
    """

    arrivals: list[float]
    rst_time: float | None = None
    window: int | None = None
    ttl: int | None = None
    df: int | None = None
    options: str | None = None
    mss: int | None = None
    rst: bool = False
    rst_ack: int = 0
    rst_win: int = 0
    rst_nonzero: int = 0
    rtt: float | None = None  # handshake RTT in seconds (Connect=)
    test: str = "syn"  # "syn" | "lastack" | "finwait"
    obs_id: str | None = None
    listen_s: float | None = None  # we stopped listening this long after the probe (None = no limit)

    def times(self) -> FloatArray:
        t = list(self.arrivals)
        if self.rst_time is not None:
            t.append(self.rst_time)
        return np.asarray(t, dtype=float)

    def header_values(self, absent_rst: bool = True) -> dict[str, HeaderValue]:
        """Header features as the DBs store them (TTL rounded up to its initial value). With
        `absent_rst` False the RST field is left out when no RST was seen (its absence is then the
        timing model's business: lost, dropped, or due after the listen limit)."""
        out: dict[str, HeaderValue] = {}
        if self.window is not None:
            out["window"] = int(self.window)
        if self.ttl is not None:
            out["ttl"] = normalise_ttl(int(self.ttl))
        if self.df is not None:
            out["df"] = int(self.df)
        if self.options is not None:
            out["options"] = self.options or "X"
        if self.mss is not None:
            out["mss"] = int(self.mss)
        if self.test == "syn" and (self.rst or absent_rst):
            win = int(self.window) if self.window is not None else -1
            out["rst"] = (rst_code(1, self.rst_ack, rst_win3(self.rst_win, win), self.rst_nonzero)
                          if self.rst else 0)
        return out

    def signature(self, time_s: float | None = None) -> str:
        """The measurement as a Cron-OS line (gaps in µs, Connect = RTT in µs)."""
        return format_cronos(cronos_from_times(
            self.test, self.arrivals, self.rst_time, time_s=time_s,
            connect_us=self.rtt * 1e6 if self.rtt is not None else None))


class ObservationHeader(TypedDict, total=False):
    """The keywords of TimingObservation besides the packet times (observation_from_times)."""

    window: int | None
    ttl: int | None
    df: int | None
    options: str | None
    mss: int | None
    rst_ack: int
    rst_win: int
    rst_nonzero: int
    rtt: float | None
    test: str
    obs_id: str | None
    listen_s: float | None


class ClosedWorldOptions(TypedDict, total=False):
    """TimingModel's fields that TimingModel.closed_world() leaves to its caller (all but
    strict_packets, generic_rule and adequacy_alpha, which it sets)."""

    jitter_scales: tuple[float, ...]
    loss_probs: tuple[float, ...]
    rst_drop: float
    header_change: tuple[float, ...]
    first_delay_mean: float
    first_early_scale: float
    max_skip: int
    k_max: int
    unknown_prior: float
    background_gap: tuple[float, float]
    temperature: float
    batch: int
    match_threshold: float
    ambiguity_ratio: float
    spurious_rst: float
    generic_min_lr: float
    rfc_bases: tuple[float, ...]


@dataclass
class TimingModel:
    """Parameters of the environment model (defaults chosen on training samples, see bench README)."""

    jitter_scales: tuple[float, ...] = (0.03, 0.15, 0.6)  # mean one-way delay excess per host (s)
    loss_probs: tuple[float, ...] = (0.005, 0.03, 0.1)  # mixture over per-packet loss probability
    rst_drop: float = 0.05  # extra probability that a middlebox drops the final RST
    header_change: tuple[float, ...] = (0.1,)  # pi: probability a header field is not the stack's
    # value; several values = a mixture (how much a host's headers were rewritten is per host)
    first_delay_mean: float = 0.6  # s, delay of the first received packet after its schedule slot
    first_early_scale: float = 0.03  # s, tolerance for a first packet earlier than its slot
    max_skip: int = 3  # losses allowed before the last matched packet
    k_max: int = 12  # longer observations are aligned on their first k_max packets
    unknown_prior: float = 0.001
    background_gap: tuple[float, float] = (0.02, 600.0)  # log-uniform range of the unknown model
    temperature: float = 1.0  # posterior = softmax(loglik / temperature)
    batch: int = 64  # observations scored together (memory ~ batch x variants x k floats)
    match_threshold: float = 0.5  # top confidence needed for a "match" outcome
    ambiguity_ratio: float = 0.25  # classes within this factor of the top are listed as fitting
    strict_packets: bool = True  # a RST aligns only to a class's RST (False: flags are a header field)
    spurious_rst: float = 0.01  # a RST that is not the stack's (middlebox); Hershel+'s RST volatility
    adequacy_alpha: float = 1e-3  # timing excess with a smaller tail probability is beyond jitter
    generic_rule: bool = True  # RFC 6298 default schedules name no OS by themselves
    generic_min_lr: float = 10.0  # evidence beyond such a schedule needed to name the class
    rfc_bases: tuple[float, ...] = (1.0, 3.0)  # RFC 6298 §2.1 initial RTO, RFC 2988/1122's 3 s

    @classmethod
    def closed_world(cls, **kw: Unpack[ClosedWorldOptions]) -> TimingModel:
        """Hershel's setting: the DB holds every stack there is (no "unknown" from misfit, no
        "generic"), and RST flags are a header field like the window (a changed field may turn the
        last SYN-ACK into a "RST"). What the Hershel+ benchmark protocol simulates; the defaults are
        the open world a live prober meets."""
        return cls(strict_packets=False, generic_rule=False, adequacy_alpha=0.0, **kw)


class GenericEvidence(TypedDict):
    """Why an RFC 6298 default SYN-ACK schedule names (or does not name) its class."""

    schedule: str  # in words: initial RTO, doubling, retransmissions seen
    initial_rto_s: float
    evidence_lr: float  # likelihood ratio of the evidence beyond the schedule: class vs stacks in general
    evidence: dict[str, float]  # per header field / connection test: its likelihood ratio
    consistent: NotRequired[list[str]]  # ids of the classes the schedule fits about as well


class Explanation(TypedDict):
    """Whether a class accounts for every packet (TimingClassifier.explain)."""

    unexplained: list[str]  # what it does not account for, in words (empty: everything)
    distance: dict[str, float]  # per test: summed delay excess and the jitter it was judged against


class UnknownDict(TypedDict):
    nearest: str | None
    nearest_label: str | None
    distance: dict[str, float]
    reasons: list[str]


AlternativeDict = TypedDict("AlternativeDict", {"class": str, "label": str, "confidence": float})

#: TimingVerdict.to_dict(): one JSON line of `hostprint timing classify`
VerdictDict = TypedDict("VerdictDict", {
    "obs_id": str | None,
    "outcome": str,
    "class": str | None,
    "label": str | None,
    "confidence": float | None,
    "alternatives": list[AlternativeDict],
    "unknown_probability": NotRequired[float],
    "unknown": NotRequired[UnknownDict],
    "generic": NotRequired[GenericEvidence],
    "listen_limit_s": NotRequired[float],
    "censored_ambiguous": NotRequired[list[str]],
})


@dataclass
class TimingVerdict:
    outcome: str  # "match" | "ambiguous" | "unknown" | "generic"
    ranked: list[tuple[TimingClass, float]]  # best first, confidence = posterior probability
    unknown_probability: float
    nearest: TimingClass | None = None
    distance: dict[str, float] = field(default_factory=dict)
    obs_id: str | None = None
    ratio: float = 0.25  # classes within this factor of the top count as fitting equally
    reasons: list[str] = field(default_factory=list)  # why "unknown" / "generic"
    generic: GenericEvidence | None = None  # the RFC schedule and the evidence beyond it
    listen_limit_s: float | None = None  # the shortest listen limit among the observations
    censored_ambiguous: list[TimingClass] = field(default_factory=list)  # the limit cannot separate these

    @property
    def best(self) -> TimingClass | None:
        return None if self.outcome in ("unknown", "generic") or not self.ranked else self.ranked[0][0]

    @property
    def fitting(self) -> list[tuple[TimingClass, float]]:
        """The classes that fit about equally well (several for an ambiguous outcome)."""
        if not self.ranked:
            return []
        return [self.ranked[0]] + [rc for rc in self.ranked[1:] if rc[1] >= self.ranked[0][1] * self.ratio]

    def to_dict(self) -> VerdictDict:
        best = self.best
        out: VerdictDict = {
            "obs_id": self.obs_id,
            "outcome": self.outcome,
            "class": best.id if best else None,
            "label": best.label if best else None,
            "confidence": round(self.ranked[0][1], 4) if best and self.ranked else None,
            "alternatives": [
                {"class": c.id, "label": c.label, "confidence": round(p, 4)}
                for c, p in (self.ranked[1:6] if best else self.ranked[:5])
            ],
            "unknown_probability": round(self.unknown_probability, 4),
        }
        if self.outcome == "unknown":
            out["unknown"] = {
                "nearest": self.nearest.id if self.nearest else None,
                "nearest_label": self.nearest.label if self.nearest else None,
                "distance": self.distance,
                "reasons": list(self.reasons),
            }
        if self.outcome == "generic" and self.generic is not None:
            out["generic"] = self.generic.copy()
        if self.listen_limit_s is not None:
            out["listen_limit_s"] = round(self.listen_limit_s, 3)
            out["censored_ambiguous"] = [c.id for c in self.censored_ambiguous]
        return out


def _logsumexp(a: FloatArray, axis: int) -> FloatArray:
    m: FloatArray = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    total: FloatArray = np.sum(np.exp(a - m), axis=axis)
    return np.squeeze(m, axis) + np.log(total)


class _Variant(NamedTuple):
    """One alignment: class `cidx`'s schedule with `k` of its packets matched at chosen positions."""

    cidx: int
    glo: FloatArray  # (k-1,) summed gap ranges between the chosen positions
    ghi: FloatArray
    flo: float  # the first chosen packet's offset range from the schedule's first packet
    fhi: float
    n: int  # packets in the schedule
    status: int  # RST: 0 the class sends none, 1 the last chosen packet is it, 2 it is not chosen
    lw: float  # log weight of the schedule
    olo: FloatArray  # (k,) offset ranges of the chosen packets from the reference one
    ohi: FloatArray
    ref: int  # the reference packet (index among the chosen ones)
    interior: int  # packets skipped before the last chosen one
    tail: tuple[FloatArray, FloatArray]  # offset ranges of the packets after the last chosen one from it
    nsamp: int  # training samples behind the ranges (0: ranges from a source)


@dataclass
class _Table:
    """The variants matching k packets, as arrays over the variants V (sorted by class)."""

    cls: IntArray  # (V,) class index
    const: F32Array  # (V, scales) log normaliser of the timing density per jitter scale
    olo: F32Array  # (V, k) offset ranges against the reference packet
    ohi: F32Array
    oloT: F32Array  # (k, V) the same, transposed and contiguous
    ohiT: F32Array
    ref: IntArray  # (V,)
    nsamp: FloatArray  # (V,)
    flo: F32Array  # (V,) first matched packet's offset range
    fhi: F32Array
    n: IntArray  # (V,) schedule length
    status: IntArray  # (V,) RST status (see _Variant)
    lw: FloatArray  # (V,) schedule log weight
    starts: IntArray  # first variant of each class present
    seg_cls: IntArray  # the class of each of those segments
    seg_of: IntArray  # (V,) segment of each variant
    inv_mu: np.float32
    inv_early: np.float32
    tlo: FloatArray  # (V, T) offsets of the unmatched trailing packets from the last matched one (inf: none)
    thi: FloatArray
    trst: BoolArray  # (V, T) that trailing packet is the class's RST
    tvalid: BoolArray
    interior: FloatArray  # (V,) packets lost before the last matched one
    kq: FloatArray  # (V,) matched packets that are not the RST
    rstm: FloatArray  # (V,) 1.0 when the last matched packet is the RST


class _VariantIndex:
    """All alignments of all class schedules of one test, grouped by the number of packets matched.

    For matched-packet count K, a variant is (class, schedule, increasing subset of K positions of
    the schedule's first K + max_skip packets). Stored: summed gap ranges between the chosen
    positions, the chosen first position's offset range, the schedule length and RST status.
    """

    def __init__(self, entries: list[tuple[int, Schedule]], n_classes: int, model: TimingModel):
        self.model = model
        self.n_classes = n_classes
        self.tables: dict[int, _Table] = {}
        b = np.asarray(model.jitter_scales)
        self.logw_scale = -math.log(len(b))
        n_max = max([s.n for _, s in entries] + [1])
        self.loss = self._loss_table(max(n_max, 2) + 1)
        per_k: dict[int, list[_Variant]] = {}
        for cidx, s in entries:
            n = s.n
            lw = math.log(max(s.weight, 1e-12))
            clo = np.concatenate([[0.0], np.cumsum(s.gap_lo)])
            chi = np.concatenate([[0.0], np.cumsum(s.gap_hi)])
            smp = np.vstack(s.samples) if s.samples else None
            for k in range(1, min(n, model.k_max) + 1):
                span = min(n, k + model.max_skip)
                for pos in itertools.combinations(range(span), k):
                    p = np.asarray(pos)
                    glo: FloatArray
                    ghi: FloatArray
                    olo: FloatArray
                    ohi: FloatArray
                    if smp is not None:
                        # ranges straight from the training samples; offsets are taken relative to
                        # the packet that makes them tightest (old Linux's lag moves every
                        # retransmission against the first SYN-ACK, but not against each other)
                        g = np.diff(smp[:, p], axis=1)
                        glo, ghi = g.min(0), g.max(0)
                        o = smp[:, p] - smp[:, p[0]][:, None]
                        best_w, ref, olo, ohi = float((o.max(0) - o.min(0)).sum()), 0, o.min(0), o.max(0)
                        for j in range(1, k):
                            o = smp[:, p] - smp[:, p[j]][:, None]
                            w = float((o.max(0) - o.min(0)).sum())
                            if w < best_w - 1e-9:
                                best_w, ref, olo, ohi = w, j, o.min(0), o.max(0)
                    else:
                        glo = clo[p[1:]] - clo[p[:-1]]
                        ghi = chi[p[1:]] - chi[p[:-1]]
                        ref, olo, ohi = 0, np.r_[0.0, np.cumsum(glo)], np.r_[0.0, np.cumsum(ghi)]
                    status = 0
                    if s.has_rst:
                        status = 1 if pos[-1] == n - 1 else 2
                    # packets after the last matched one: their offsets from it (for censoring)
                    last = pos[-1]
                    tail = (clo[last + 1:] - clo[last], chi[last + 1:] - chi[last])
                    per_k.setdefault(k, []).append(
                        _Variant(cidx, glo, ghi, s.pos_lo[pos[0]], s.pos_hi[pos[0]], n, status, lw, olo, ohi, ref,
                                 last + 1 - k, tail, len(s.samples)))
        for k, rows in per_k.items():
            rows.sort(key=lambda r: r.cidx)
            cls = np.asarray([r.cidx for r in rows], dtype=np.int64)
            lo = np.asarray([r.glo for r in rows], dtype=float).reshape(len(rows), k - 1)
            hi = np.asarray([r.ghi for r in rows], dtype=float).reshape(len(rows), k - 1)
            width = hi - lo
            # log normaliser of "uniform range convolved with the delay density" per scale, plus scale weight
            const = np.stack([self.logw_scale - np.sum(np.log(width + 2 * bs), axis=1) for bs in b], axis=1)
            starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
            vstatus = np.asarray([r.status for r in rows], dtype=np.int64)
            T = max(len(r.tail[0]) for r in rows)
            tlo = np.full((len(rows), T), np.inf)
            thi = np.full((len(rows), T), np.inf)
            trst = np.zeros((len(rows), T), dtype=bool)
            for i, r in enumerate(rows):
                m = len(r.tail[0])
                tlo[i, :m], thi[i, :m] = r.tail
                if r.status == 2:
                    trst[i, m - 1] = True  # the class's RST is the last unmatched packet
            olo32 = np.asarray([r.olo for r in rows], dtype=float).reshape(len(rows), k).astype(np.float32)
            ohi32 = np.asarray([r.ohi for r in rows], dtype=float).reshape(len(rows), k).astype(np.float32)
            self.tables[k] = _Table(
                cls=cls, const=const.astype(np.float32), olo=olo32, ohi=ohi32,
                oloT=np.ascontiguousarray(olo32.T), ohiT=np.ascontiguousarray(ohi32.T),
                ref=np.asarray([r.ref for r in rows], dtype=np.int64),
                nsamp=np.asarray([r.nsamp for r in rows], dtype=float),
                flo=np.asarray([r.flo for r in rows]).astype(np.float32),
                fhi=np.asarray([r.fhi for r in rows]).astype(np.float32),
                n=np.asarray([r.n for r in rows], dtype=np.int64),
                status=vstatus,
                lw=np.asarray([r.lw for r in rows]),
                starts=starts, seg_cls=cls[starts],
                seg_of=np.cumsum(np.r_[False, cls[1:] != cls[:-1]]),
                inv_mu=np.float32(-1.0 / model.first_delay_mean),
                inv_early=np.float32(1.0 / model.first_early_scale),
                tlo=tlo, thi=thi, trst=trst, tvalid=np.isfinite(tlo),
                interior=np.asarray([r.interior for r in rows], dtype=float),
                kq=np.where(vstatus == 1, k - 1, k).astype(float), rstm=(vstatus == 1).astype(float),
            )

    def _loss_table(self, size: int) -> FloatArray:
        """log P(this particular loss pattern) for n sent, k received, RST status (none/kept/lost)."""
        m = self.model
        n = np.arange(size)[:, None]
        k = np.arange(size)[None, :]
        out = np.full((size, size, 3), NEG)
        terms: list[list[FloatArray]] = [[], [], []]
        for p in m.loss_probs:
            pr = p + (1 - p) * m.rst_drop
            lp, lq = math.log(p), math.log(1 - p)
            terms[0].append(np.where(n >= k, (n - k) * lp + k * lq, NEG))
            terms[1].append(np.where((n >= k) & (k >= 1), (n - k) * lp + (k - 1) * lq + math.log(1 - pr), NEG))
            terms[2].append(np.where(n - 1 >= k, (n - 1 - k) * lp + k * lq + math.log(pr), NEG))
        w = -math.log(len(m.loss_probs))
        for st in range(3):
            out[:, :, st] = _logsumexp(np.stack(terms[st]), axis=0) + w
        return np.where(out < -1e20, NEG, out)

    def censored_loss(self, tab: _Table, x_last: float, limit: float) -> FloatArray:
        """Per variant: the loss term when nothing arrived after `x_last` up to the listen `limit`.

        Each unmatched packet after the last matched one is either lost (p; the class's RST: p or a
        middlebox drop) or due after the limit; its arrival window is x_last + the class's summed gap
        range, so the probability c that it falls after the limit is the part of that window beyond
        it (uniform). With the limit far away (c = 0) this is the plain loss term.
        """
        m = self.model
        lo, hi = x_last + tab.tlo, x_last + tab.thi
        with np.errstate(invalid="ignore"):
            c = np.where(hi > lo, (hi - limit) / np.maximum(hi - lo, 1e-9), (lo > limit).astype(float))
        c = np.where(tab.tvalid, np.clip(c, 0.0, 1.0), 1.0)
        terms = []
        for p in m.loss_probs:
            pr = p + (1 - p) * m.rst_drop
            pt = np.where(tab.trst, pr, p)
            v = np.sum(np.log(c + (1 - c) * pt), axis=1) if c.shape[1] else np.zeros(len(c))
            v = v + tab.interior * math.log(p) + tab.kq * math.log(1 - p) + tab.rstm * math.log(1 - pr)
            terms.append(v)
        return _logsumexp(np.stack(terms), axis=0) - math.log(len(m.loss_probs))

    def excess(self, t: FloatArray, cidx: int, allowed: Sequence[int] | None = None) -> float | None:
        """Smallest summed delay excess (s) over class `cidx`'s alignments of packet times `t` (the
        quantity the timing likelihood prices); None when no alignment of that length exists."""
        k = min(len(t), self.model.k_max)
        tab = self.tables.get(k)
        if tab is None or k == 0:
            return None
        sel = tab.cls == cidx
        if allowed is not None:
            sel &= np.isin(tab.status, np.asarray(allowed))
        if not sel.any():
            return None
        if k == 1:
            return 0.0
        X = np.asarray(t[:k], dtype=float)
        ref = tab.ref[sel]
        olo, ohi = tab.olo[sel].astype(float), tab.ohi[sel].astype(float)
        # ranges taken from n training samples understate the class's own spread: widen each end by
        # range / (n - 1) (the unbiased estimate of a uniform's support from its sample extremes)
        n = tab.nsamp[sel][:, None]
        wid = np.where(n > 1, (ohi - olo) / np.maximum(n - 1, 1), 0.0)
        olo, ohi = olo - wid, ohi + wid
        D = X[None, :] - X[ref][:, None]
        r = D - np.minimum(np.maximum(D, olo), ohi)
        R = r.sum(axis=1) - k * r.min(axis=1)
        return float(R.min())

    def score(self, times: Sequence[FloatArray], allowed: Sequence[int] | None = None,
              listen: Sequence[float | None] | None = None) -> FloatArray:
        """(B, C) log-likelihood of timing + loss for a batch of packet-time vectors.

        `allowed`: RST statuses of the variants that may explain the packets (0 class without RST,
        1 the last packet is the class's RST, 2 the class's RST was not seen); `listen`: per
        observation the listen limit on the same clock as the times (None = none)."""
        m = self.model
        B = len(times)
        out = np.full((B, self.n_classes), NEG)
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(times):
            if len(t) >= 1:
                groups.setdefault(min(len(t), m.k_max), []).append(i)
        inv_b = [np.float32(1.0 / x) for x in m.jitter_scales]
        L = self.loss.shape[0] - 1
        for kk, idx in groups.items():
            tab = self.tables.get(kk)
            if tab is None:
                continue
            # loss term for observations that were not truncated (k == kk): one value per variant
            ln_k = self.loss[np.minimum(tab.n, L), min(kk, L), tab.status].astype(np.float32)
            static = (ln_k + tab.lw - math.log(m.first_delay_mean)).astype(np.float32)
            for chunk in range(0, len(idx), m.batch):
                ids = idx[chunk:chunk + m.batch]
                X = np.vstack([times[i][:kk] for i in ids]).astype(np.float32)
                ktrue = np.asarray([len(times[i]) for i in ids])
                if kk > 1:
                    # shifted-exponential delays: cost = sum of each packet's delay excess over the
                    # least-delayed one (shift-invariant, so any packet can be the reference)
                    Xref = X[:, tab.ref]  # (b, V)
                    olo, ohi = tab.oloT, tab.ohiT
                    D = X[:, 0:1] - Xref
                    R: F32Array = D - np.minimum(np.maximum(D, olo[0]), ohi[0])
                    mn = R.copy()
                    for j in range(1, kk):  # position by position: (b, V) arrays stay contiguous
                        D = X[:, j:j + 1] - Xref
                        r = D - np.minimum(np.maximum(D, olo[j]), ohi[j])
                        R += r
                        np.minimum(mn, r, out=mn)
                    R -= kk * mn
                    c = tab.const
                    tl: F32Array = c[:, 0] - R * inv_b[0]
                    for j in range(1, len(inv_b)):
                        tl = np.logaddexp(tl, c[:, j] - R * inv_b[j])
                else:
                    tl = np.zeros((len(ids), len(tab.cls)), dtype=np.float32)
                x0 = X[:, :1]
                d = np.minimum(np.maximum(np.float32(0.0), x0 - tab.fhi), x0 - tab.flo)
                tl += np.where(d >= 0, d * tab.inv_mu, d * tab.inv_early)
                tl += static
                if listen is not None:
                    for bi, i in enumerate(ids):
                        lim = listen[i]
                        if lim is None or len(times[i]) > kk or not math.isfinite(lim):
                            continue
                        cl = self.censored_loss(tab, float(times[i][kk - 1]), float(lim))
                        tl[bi] += (cl - ln_k).astype(np.float32)
                if allowed is not None:
                    ok = np.isin(tab.status, np.asarray(allowed))
                    if not ok.all():
                        tl[:, ~ok] = NEG
                trunc = np.flatnonzero(ktrue > kk)
                if len(trunc):  # observations longer than k_max: their true count enters the loss term
                    st = np.where(tab.status == 2, 1, tab.status)
                    for ti in trunc:
                        tl[ti] += (self.loss[np.minimum(tab.n, L), min(ktrue[ti], L), st] - ln_k)
                # per-class logsumexp over that class's variants (variants are sorted by class)
                mx = np.maximum.reduceat(tl, tab.starts, axis=1)
                s = np.add.reduceat(np.exp(tl - mx[:, tab.seg_of]), tab.starts, axis=1)
                val = mx + np.log(s)
                val = np.where(mx < -1e20, NEG, val)
                out[np.asarray(ids)[:, None], tab.seg_cls[None, :]] = val
        return out


class TimingClassifier:
    """Ranks the classes of a TimingDB for TimingObservations (see the module docstring)."""

    def __init__(self, db: TimingDB, model: TimingModel | None = None,
                 background: HeaderBackground | None = None):
        self.db = db
        self.model = model or TimingModel()
        self.classes = db.classes
        self._background = background
        self._build_headers()
        self._index: dict[str, _VariantIndex | None] = {}
        self._has_test: dict[str, BoolArray] = {}
        self._sends_rst: dict[str, BoolArray] = {}
        for test in ("syn", "lastack", "finwait"):
            entries = [(i, s) for i, c in enumerate(self.classes) for s in c.schedules_for(test)]
            self._has_test[test] = np.asarray([bool(c.schedules_for(test)) for c in self.classes])
            self._sends_rst[test] = np.asarray([any(s.has_rst for s in c.schedules_for(test)) for c in self.classes])
            if any(s.rtt_scaled for _, s in entries):
                self._index[test] = None  # built per observation from RTT-scaled schedules
            elif entries:
                self._index[test] = _VariantIndex(entries, len(self.classes), self.model)
        self._rfc = [self.rfc_default(c) for c in self.classes]

    @property
    def background(self) -> HeaderBackground:
        if self._background is None:
            self._background = read_background()
        return self._background

    # -- header part --------------------------------------------------------------------------

    def _build_headers(self) -> None:
        C = len(self.classes)
        self._vocab: dict[str, dict[HeaderValue, int]] = {}  # per field: value -> column
        self._hprob: dict[str, FloatArray] = {}  # (C, values + 1): a class's probability of each value
        self._hwild: dict[str, BoolArray] = {}  # (C,): the class does not pin the field down
        self._hbg: dict[str, FloatArray] = {}  # (values + 1,): frequency among the classes (last: other)
        alpha = 0.5
        for f in HEADER_FIELDS:
            vocab: dict[HeaderValue, int] = {}
            dists: list[dict[HeaderValue, float]] = []
            for c in self.classes:
                vals = dict(c.header.get(f) or {})
                if f == "rst" and self.model.strict_packets:
                    # whether a RST comes is timing evidence; the field then holds only its flags,
                    # compared when one came (a class that never sends one has no flags to compare)
                    vals.pop(0, None)
                    tot = sum(vals.values())
                    vals = {v: p / tot for v, p in vals.items()} if tot > 0 else {}
                dists.append(vals)
                for v in vals:
                    vocab.setdefault(v, len(vocab))
            P = np.zeros((C, len(vocab) + 1))
            wild = np.zeros(C, dtype=bool)
            for i, vals in enumerate(dists):
                if not vals:
                    wild[i] = True
                    continue
                for v, p in vals.items():
                    P[i, vocab[v]] += p
            counts = P[~wild].sum(axis=0)
            bg = (counts + alpha) / (counts.sum() + alpha * (len(vocab) + 1))
            self._vocab[f], self._hprob[f], self._hwild[f], self._hbg[f] = vocab, P, wild, bg

    def _header_values(self, o: TimingObservation) -> dict[str, HeaderValue]:
        return o.header_values(absent_rst=not self.model.strict_packets)

    def header_loglik(self, values: Sequence[Mapping[str, HeaderValue]]) -> tuple[FloatArray, FloatArray]:
        """(B, C) class header log-likelihoods and (B,) the unknown model's."""
        pis = self.model.header_change
        B, C = len(values), len(self.classes)
        out = np.zeros((len(pis), B, C))
        unk = np.zeros(B)
        for f in HEADER_FIELDS:
            vocab, P, wild, bg = self._vocab[f], self._hprob[f], self._hwild[f], self._hbg[f]
            cols = np.asarray([vocab.get(v[f], len(vocab)) if f in v else -1 for v in values])
            have = cols >= 0
            if not have.any():
                continue
            cc = np.where(have, cols, len(vocab))
            b = bg[cc]  # (B,)
            Pc = P[:, cc].T  # (B, C)
            for j, pi in enumerate(pis):
                lik = np.where(wild[None, :], b[:, None], (1 - pi) * Pc + pi * b[:, None])
                out[j] += np.where(have[:, None], np.log(lik), 0.0)
            unk += np.where(have, np.log(b), 0.0)
        if len(pis) == 1:
            return out[0], unk
        return _logsumexp(out, axis=0) - math.log(len(pis)), unk

    # -- timing part --------------------------------------------------------------------------

    def _gap_density(self, g: FloatArray | float) -> float:
        """log density of gaps under the broad log-uniform model (the unknown stack's)."""
        lo, hi = self.model.background_gap
        g = np.clip(np.asarray(g, dtype=float), lo, hi)
        return float(np.sum(-np.log(g * math.log(hi / lo))))

    def _background_timing(self, t: FloatArray) -> float:
        bg = self._gap_density(np.diff(t[: self.model.k_max]))
        x0 = max(float(t[0]), 0.0) if len(t) else 0.0
        # how many packets a stack sends: a broad 1/(k(k+1)) prior, so that long observations cost
        # the unknown model something too (classes pay for every packet they must have lost)
        count = -math.log(len(t) * (len(t) + 1)) if len(t) else 0.0
        return bg + count - x0 / self.model.first_delay_mean - math.log(self.model.first_delay_mean)

    def timing_loglik(self, obs: Sequence[TimingObservation], test: str, censor: bool = True) -> FloatArray:
        N = len(obs)
        times = [np.sort(o.times()) for o in obs]
        listen = [o.listen_s if censor else None for o in obs]
        if not self.model.strict_packets:
            res = self._score_times(times, obs, test, None, listen)
            plain = list(range(N))
        else:
            res = np.full((N, len(self.classes)), NEG)
            plain = [i for i, o in enumerate(obs) if o.rst_time is None]
            rst_at = [(i, o.rst_time) for i, o in enumerate(obs) if o.rst_time is not None]
            with_rst = [i for i, _ in rst_at]
            if plain:
                res[plain] = self._score_times([times[i] for i in plain], [obs[i] for i in plain], test, (0, 2),
                                               [listen[i] for i in plain])
            if with_rst:
                sub = [obs[i] for i in with_rst]
                # (a) the RST is the class's own final RST
                a = self._score_times([times[i] for i in with_rst], sub, test, (1,), [listen[i] for i in with_rst])
                # (b) the RST came from elsewhere: the class's packets alone, cut off by that RST
                syn_only = [np.sort(np.asarray(o.arrivals, dtype=float)) for o in sub]
                # a RST ends the connection: what the class would send after it is censored (only for
                # observations that carry a listen limit; offline ones say nothing about listening)
                cut = [None if (lim := listen[i]) is None else min(lim, rst) for i, rst in rst_at]
                b = self._score_times(syn_only, sub, test, (0, 2), cut)
                extra = np.asarray([math.log(self.model.spurious_rst) + self._gap_density(
                    rst - (max(obs[i].arrivals) if obs[i].arrivals else 0.0)) for i, rst in rst_at])
                b = np.where(b <= NEG / 2, NEG, b + extra[:, None])
                res[with_rst] = np.logaddexp(a, b)
                res[with_rst] = np.where(res[with_rst] <= NEG / 2, NEG, res[with_rst])
        # Linux ends the FIN retransmissions of LAST_ACK / FIN_WAIT1 on elapsed *time* (tcp_timer.c
        # retransmits_timed_out(): the time `boundary` retransmissions take from TCP_RTO_MIN), so a
        # first RTO a little above 200 ms sometimes buys one more packet than the class recorded
        # (seen in the lab: FIN_WAIT1 with 5 packets where the learned class had 4), and the loss model
        # can explain fewer packets but never more. Where no class explains the whole observation,
        # score it without its last packet, at a price. Not for SYN_RCVD: SYN-ACK retries are counted
        # (tcp_synack_retries), and one more SYN-ACK is another class.
        bad = [i for i in plain if test != "syn" and len(times[i]) >= 3 and res[i].max() <= NEG / 2]
        if bad:
            trimmed = self._score_times([times[i][:-1] for i in bad], [obs[i] for i in bad], test,
                                        (0, 2) if self.model.strict_packets else None, [listen[i] for i in bad])
            res[bad] = np.where(trimmed <= NEG / 2, NEG, trimmed + EXTRA_PACKET_LOGP)
        # classes without a signature for this test say nothing: background timing
        if not self._has_test[test].all():
            bgt = np.asarray([self._background_timing(t) if len(t) else 0.0 for t in times])
            res[:, ~self._has_test[test]] = bgt[:, None]
        return res

    def _index_for(self, test: str, o: TimingObservation) -> _VariantIndex | None:
        idx = self._index.get(test)
        if idx is not None or test not in self._index:
            return idx
        rtt_us = o.rtt * 1e6 if o.rtt is not None else None
        entries = [(ci, s.scaled(rtt_us)) for ci, c in enumerate(self.classes) for s in c.schedules_for(test)]
        return _VariantIndex(entries, len(self.classes), self.model)

    def _score_times(self, times: list[FloatArray], obs: Sequence[TimingObservation], test: str,
                     allowed: Sequence[int] | None = None,
                     listen: Sequence[float | None] | None = None) -> FloatArray:
        idx = self._index.get(test)
        if idx is not None:
            return idx.score(times, allowed, listen)
        res = np.full((len(obs), len(self.classes)), NEG)
        if test in self._index:  # RTT-scaled schedules: one small index per observation
            for i, o in enumerate(obs):
                ix = self._index_for(test, o)
                assert ix is not None
                res[i] = ix.score([times[i]], allowed, [listen[i]] if listen is not None else None)[0]
        return res

    # -- public -------------------------------------------------------------------------------

    def loglik(self, obs: Sequence[TimingObservation], censor: bool = True) -> tuple[FloatArray, FloatArray]:
        """(N, C) class log-likelihoods and (N,) the unknown model's, each observation on its own."""
        N, C = len(obs), len(self.classes)
        L = np.zeros((N, C))
        U = np.zeros(N)
        hl, hu = self.header_loglik([self._header_values(o) for o in obs])
        L += hl
        U += hu
        by_test: dict[str, list[int]] = {}
        for i, o in enumerate(obs):
            by_test.setdefault(o.test, []).append(i)
        for test, ids in by_test.items():
            sub = [obs[i] for i in ids]
            L[ids] += self.timing_loglik(sub, test, censor)
            U[ids] += np.asarray([self._background_timing(np.sort(o.times())) if len(o.times()) else 0.0
                                  for o in sub])
        return L, U

    def classify(self, obs: TimingObservation) -> TimingVerdict:
        return self.classify_many([obs])[0]

    def classify_many(self, obs: Sequence[TimingObservation], top: int = 10) -> list[TimingVerdict]:
        L, U = self.loglik(obs)
        L0: FloatArray | None = None
        cens = [i for i, o in enumerate(obs) if o.listen_s is not None]
        if cens:
            L0 = np.array(L)
            L0[cens] = self.loglik([obs[i] for i in cens], censor=False)[0]
        return [self._verdict(L[i], U[i], [obs[i]], top, L[i:i + 1], U[i:i + 1],
                              None if L0 is None else L0[i]) for i in range(len(obs))]

    def classify_host(self, observations: Sequence[TimingObservation], top: int = 10) -> TimingVerdict:
        """Several tests of one host: their evidence multiplies (header counted from the syn test)."""
        observations = list(observations) or [TimingObservation(arrivals=[])]
        L, U = self.loglik(observations)
        L0: FloatArray | None = None
        if any(o.listen_s is not None for o in observations):
            L0 = self.loglik(observations, censor=False)[0].sum(axis=0)
        return self._verdict(L.sum(axis=0), float(U.sum()), observations, top, L, U, L0)

    def posteriors(self, L: FloatArray, U: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Class and unknown posteriors from log-likelihoods (rows = observations)."""
        m = self.model
        C = L.shape[-1]
        lp_c = math.log((1 - m.unknown_prior) / C)
        a = np.concatenate([L / m.temperature + lp_c, (U / m.temperature + math.log(m.unknown_prior))[..., None]],
                           axis=-1)
        a = a - a.max(axis=-1, keepdims=True)
        p = np.exp(a)
        p /= p.sum(axis=-1, keepdims=True)
        return p[..., :C], p[..., C]

    def _fitting_ids(self, L: FloatArray, U: float) -> set[int]:
        pc, _ = self.posteriors(L[None, :], np.asarray([U]))
        pc = pc[0]
        top = float(pc.max()) if len(pc) else 0.0
        return {int(i) for i in np.flatnonzero((pc >= top * self.model.ambiguity_ratio) & (L > NEG / 2))}

    def _verdict(self, L: FloatArray, U: float, obs: Sequence[TimingObservation], top: int,
                 Lrows: FloatArray, Urows: FloatArray, L0: FloatArray | None = None) -> TimingVerdict:
        m = self.model
        o0 = obs[0]
        pcs, pus = self.posteriors(L[None, :], np.asarray([U]))
        pc, pu = pcs[0], float(pus[0])
        order = np.argsort(-pc, kind="stable")[:top]  # ties: DB order (the default class comes first)
        ranked = [(self.classes[i], float(pc[i])) for i in order if L[i] > NEG / 2]
        limits = [o.listen_s for o in obs if o.listen_s is not None]
        limit = min(limits) if limits else None
        censored: list[TimingClass] = []
        if L0 is not None and ranked:
            with_limit = self._fitting_ids(L, U)
            without = self._fitting_ids(L0, U)
            if with_limit - without and len(with_limit) > 1 and pu < ranked[0][1]:
                censored = [self.classes[i] for i in sorted(with_limit, key=lambda i: -pc[i])]

        def verdict(outcome: str, nearest: TimingClass | None, dist: dict[str, float], reasons: list[str],
                    generic: GenericEvidence | None = None) -> TimingVerdict:
            return TimingVerdict(outcome, ranked, pu, nearest, dist, obs_id=o0.obs_id, ratio=m.ambiguity_ratio,
                                 reasons=reasons, generic=generic, listen_limit_s=limit, censored_ambiguous=censored)

        if not ranked or pu >= ranked[0][1]:
            nearest = self.classes[int(np.argmax(L))] if len(L) else None
            # the nearest class and how far it is: log-likelihood shortfall against "unknown" (nats)
            # and the plain misfit of its best alignment
            dist: dict[str, float] = {"nats": round(float(U - L.max()), 2) if len(L) else 0.0}
            reasons = ["no class explains the observation better than a stack outside the DB"]
            if nearest is not None:
                dist.update(self.misfit(o0, nearest))
                ex = self.explain(obs, self.classes.index(nearest))
                dist.update(ex["distance"])
                reasons += ex["unexplained"]
            return verdict("unknown", nearest, dist, reasons)
        best = ranked[0][0]
        bi = self.classes.index(best)
        ex = (self.explain(obs, bi) if m.strict_packets or m.adequacy_alpha > 0
              else Explanation(unexplained=[], distance={}))
        if ex["unexplained"]:
            dist = dict(self.misfit(o0, best))
            dist.update(ex["distance"])
            return verdict("unknown", best, dist, list(ex["unexplained"]))
        if m.generic_rule:
            gen = self.generic_evidence(obs, bi, Lrows, Urows)
            if gen is not None and gen["evidence_lr"] < m.generic_min_lr:
                # the classes whose SYN-ACK schedule fits about as well, whatever their header
                syn = [o for o in obs if o.test == "syn"]
                T = self.timing_loglik(syn, "syn").sum(axis=0)
                cut = T.max() + math.log(m.ambiguity_ratio)
                gen["consistent"] = [self.classes[i].id for i in np.argsort(-T, kind="stable")
                                     if T[i] >= cut and T[i] > NEG / 2 and self._has_test["syn"][i]][:8]
                reason = (f"the SYN-ACK schedule is the RFC 6298 default ({gen['schedule']}), which any stack "
                          f"using the RFC's numbers sends; the rest of the evidence favours {best.label} only "
                          f"{gen['evidence_lr']:.1f}:1 over a stack in general (needed {m.generic_min_lr:g}:1)")
                return verdict("generic", best, {}, [reason], gen)
        outcome = "match" if ranked[0][1] >= m.match_threshold else "ambiguous"
        return verdict(outcome, None, {}, [])

    # -- decisions on top of the posterior ------------------------------------------------------

    def jitter_bound(self, obs: TimingObservation) -> float:
        """Mean per-packet jitter the adequacy test allows: the handshake RTT clipped to the model's
        jitter scales (queueing on a path varies by about its RTT), the largest scale without one."""
        lo, hi = min(self.model.jitter_scales), max(self.model.jitter_scales)
        return hi if obs.rtt is None else min(max(float(obs.rtt), lo), hi)

    def explain(self, obs: Sequence[TimingObservation], cidx: int) -> Explanation:
        """Does class `cidx` account for every packet? {"unexplained": [reasons], "distance": {...}}."""
        cls = self.classes[cidx]
        out: list[str] = []
        dist: dict[str, float] = {}
        what = {"syn": "SYN-ACK", "lastack": "FIN", "finwait": "FIN"}
        for o in obs:
            if not self._has_test[o.test][cidx] or not len(o.times()):
                continue
            t = np.sort(o.times())
            arr = np.sort(np.asarray(o.arrivals, dtype=float))
            strict = self.model.strict_packets
            allowed: tuple[int, ...] | None
            if strict and o.rst_time is not None and not self._sends_rst[o.test][cidx]:
                after = o.rst_time - float(arr[-1]) if len(arr) else o.rst_time
                out.append(f"{o.test}: RST {after:.3f} s after the last {what[o.test]}; {cls.label} never sends one")
                t, allowed = arr, (0, 2)
            elif strict:
                allowed = (1,) if o.rst_time is not None else (0, 2)
            else:
                allowed = None
            if not len(t):
                continue
            ix = self._index_for(o.test, o)
            R = ix.excess(t, cidx, allowed) if ix is not None else None
            if R is None and o.test != "syn" and len(t) >= 3 and ix is not None:
                R = ix.excess(t[:-1], cidx, allowed)  # one packet more: explained at a price (timing_loglik)
            if R is None:
                n = max((s.n for s in cls.schedules_for(o.test)), default=0)
                out.append(f"{o.test}: {len(t)} packets, {cls.label} sends at most {n}")
                continue
            b = self.jitter_bound(o)
            m = min(len(t), self.model.k_max) - 1
            tail = _gamma_tail(m, R / b) if m > 0 else 1.0
            dist[f"{o.test}_excess_s"] = round(R, 3)
            dist[f"{o.test}_jitter_s"] = round(b, 3)
            if tail < self.model.adequacy_alpha:
                out.append(f"{o.test}: gaps off {cls.label}'s schedule by {R:.3f} s in total, more than jitter "
                           f"of {b * 1000:.0f} ms per packet explains (p = {tail:.1e})")
        return {"unexplained": out, "distance": dist}

    def rfc_default(self, cls: TimingClass) -> float | None:
        """The initial RTO r (s) when every SYN-ACK schedule of `cls` is an RFC 6298 default one:
        no RST, at least one retransmission, and each gap range holds r*2^i (or, at and above 60 s,
        any cap RFC 6298 §2.5 allows), for one r of `rfc_bases`. None otherwise."""
        ss = cls.schedules_for("syn")
        if not ss or any(s.has_rst or len(s.gap_lo) == 0 for s in ss):
            return None
        for r in self.model.rfc_bases:
            ok = True
            for s in ss:
                for i, (lo, hi) in enumerate(zip(s.gap_lo, s.gap_hi)):
                    want = r * 2.0 ** i
                    if want >= 60.0:
                        if hi < 60.0 * 0.98 or lo > want * 1.02:
                            ok = False
                    elif lo > want * 1.02 or hi < want * 0.98:
                        ok = False
            if ok:
                return r
        return None

    def generic_evidence(self, obs: Sequence[TimingObservation], cidx: int, Lrows: FloatArray,
                         Urows: FloatArray) -> GenericEvidence | None:
        """For a best class with an RFC-default SYN-ACK schedule that the SYN_RCVD test saw (no RST):
        how much the evidence outside that schedule favours the class over a stack in general.
        None when the rule does not apply."""
        r = self._rfc[cidx]
        syn = [o for o in obs if o.test == "syn" and o.rst_time is None and len(o.arrivals) >= 2]
        if r is None or not syn:
            return None
        cls = self.classes[cidx]
        pis = self.model.header_change
        pi = float(sum(pis) / len(pis))
        llr = 0.0
        fields: dict[str, float] = {}
        for o in obs:
            for f, v in self._header_values(o).items():
                if f == "rst":
                    continue
                dist = cls.header.get(f)
                b = self.background.p(f, v)
                if not dist or b is None:
                    continue
                lr = ((1 - pi) * dist.get(v, 0.0) + pi * b) / b
                fields[f"{f}={v}"] = round(lr, 2)
                llr += math.log(lr)
        for i, o in enumerate(obs):  # connection tests the class has schedules for
            if o.test != "syn" and self._has_test[o.test][cidx] and Lrows[i, cidx] > NEG / 2:
                d = float(Lrows[i, cidx] - Urows[i])
                fields[f"{o.test} schedule"] = round(math.exp(min(d, 50.0)), 2)
                llr += d
        n = max(len(o.arrivals) for o in syn) - 1
        return {"schedule": f"{r:g} s initial RTO, doubling, {n} retransmission{'s' if n != 1 else ''} seen",
                "initial_rto_s": r, "evidence_lr": round(math.exp(min(llr, 50.0)), 2), "evidence": fields}

    def misfit(self, obs: TimingObservation, cls: TimingClass) -> dict[str, float]:
        """Human-readable distance to a class: header fields that differ, packets it would have had
        to lose, and seconds of gap residual of the best alignment (no noise model)."""
        hv = self._header_values(obs)
        mism = sum(1 for f, v in hv.items() if cls.header.get(f) and v not in cls.header[f])
        t = np.sort(obs.times())
        if self.model.strict_packets and obs.rst_time is not None and \
                not any(s.has_rst for s in cls.schedules_for(obs.test)):
            t = np.sort(np.asarray(obs.arrivals, dtype=float))  # its RST is not the class's packet
        best = (math.inf, 0)
        for s in cls.schedules_for(obs.test):
            s = s.scaled(obs.rtt * 1e6 if obs.rtt is not None else None)
            k = min(len(t), self.model.k_max)
            if k > s.n or k == 0:
                continue
            G = np.diff(t[:k])
            clo = np.concatenate([[0.0], np.cumsum(s.gap_lo)])
            chi = np.concatenate([[0.0], np.cumsum(s.gap_hi)])
            for pos in itertools.combinations(range(min(s.n, k + self.model.max_skip)), k):
                p = np.asarray(pos)
                lo, hi = clo[p[1:]] - clo[p[:-1]], chi[p[1:]] - chi[p[:-1]]
                r = float(np.abs(G - np.clip(G, lo, hi)).sum())
                if r < best[0]:
                    best = (r, s.n - len(t))
        return {"header_mismatches": float(mism),
                "timing_residual_s": round(best[0], 3) if math.isfinite(best[0]) else -1.0,
                "missing_packets": float(best[1])}


def _gamma_tail(m: int, x: float) -> float:
    """P(Gamma(m, 1) >= x) for integer shape m >= 1: e^-x * sum_{i<m} x^i / i!."""
    if x <= 0:
        return 1.0
    term, total = 1.0, 1.0
    for i in range(1, m):
        term *= x / i
        total += term
    return float(min(1.0, math.exp(-x + math.log(total))))


def observation_from_times(times: Iterable[float], *, rst: bool = False,
                           **header: Unpack[ObservationHeader]) -> TimingObservation:
    """Hershel convention (all packet times, the last one the RST when `rst`) -> TimingObservation."""
    t = [float(x) for x in times]
    rst_time = t.pop() if rst and t else None
    return TimingObservation(arrivals=t, rst_time=rst_time, rst=rst, **header)
