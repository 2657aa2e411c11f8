"""The timing technique's report glue: what one test saw (TestResult), and a host's timing block,
architecture findings and Cron-OS lines from its tests. The twin of match/stack_report.py for -O:
the rules (a SYN relay explains the SYN test, unknown and generic outcomes name no class, the listen
limit and the classes it cannot separate) are functions a test can call on recorded results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from hostprint.match.timing import GenericEvidence, TimingClassifier, TimingObservation, TimingVerdict
from hostprint.model import ArchitectureFinding, TimingBlock
from hostprint.signatures.timing_db import TimingClass


class SynAckDict(TypedDict):
    window: int | None
    ttl: int | None
    df: int | None
    options: str | None
    mss: int | None


class TimingTestDict(TypedDict):
    """TestResult.to_dict(): one test in the host's timing block (`tests`)."""

    test: str
    port: int
    rtt_us: int | None
    arrivals: list[float]
    rst: float | None
    signature: str
    status: str
    stopped: str
    segment_ttl: int | None
    listened_s: float
    synack: SynAckDict | None


class SynRelay(TypedDict):
    kind: str  # syn-relay | syn-cookie
    reasons: list[str]


class ArchitectureDict(TypedDict):
    """An architecture finding as host_report writes it (model.ArchitectureFinding reads it)."""

    kind: str
    detail: str
    reasons: list[str]


class MatchDict(TypedDict):
    name: str
    id: str
    family: str | None
    confidence: float


class UnknownReport(TypedDict):
    nearest: str | None  # label of the nearest class
    distance: dict[str, float]
    reasons: list[str]


class GenericReport(GenericEvidence):
    reason: str


class _TimingReportParts(TypedDict, total=False):
    unknown: UnknownReport
    generic: GenericReport
    fitting: list[str]


class TimingReport(_TimingReportParts):
    """A host's timing block as host_report writes it (model.TimingBlock reads it)."""

    db: str
    tests: list[TimingTestDict]
    matches: list[MatchDict]
    listen_limit_s: float | None
    censored_ambiguous: list[str]
    outcome: str
    lines: list[str]


class HostReport(TypedDict):
    timing: TimingReport
    architecture: list[ArchitectureDict]
    fingerprint: str


@dataclass
class TestResult:
    """What one test saw on one target port (times in s since our probe: SYN / FIN / request)."""

    test: str
    address: str
    port: int
    sport: int
    status: str = "pending"  # ok | no-response | closed | reset | no-close | no-handshake | interrupted
    rtt_us: float | None = None
    arrivals: list[float] = field(default_factory=list)
    rst: float | None = None
    rst_ack: int = 0
    rst_win: int = 0
    rst_nonzero: int = 0
    window: int | None = None  # first SYN-ACK's header
    ttl: int | None = None
    df: int | None = None
    options: str | None = None
    mss: int | None = None
    seg_ttl: int | None = None  # TTL of the first measured FIN / data segment (relay detection)
    listened: float = 0.0  # seconds we listened after the probe
    stopped: str = ""  # early | timeout | rst | closed | interrupted (a stop cut the run short)

    def observation(self, with_header: bool) -> TimingObservation:
        # what we did not see because we stopped listening is censored, not lost (match/timing.py)
        o = TimingObservation(arrivals=list(self.arrivals), rst_time=self.rst, rst=self.rst is not None,
                              rst_ack=self.rst_ack, rst_win=self.rst_win, rst_nonzero=self.rst_nonzero,
                              rtt=self.rtt_us / 1e6 if self.rtt_us is not None else None, test=self.test,
                              obs_id=f"{self.address}:{self.port}/{self.test}",
                              listen_s=self.listened if self.listened > 0 else None)
        if with_header:
            o.window, o.ttl, o.df, o.options, o.mss = self.window, self.ttl, self.df, self.options, self.mss
        return o

    def signature(self) -> str:
        return self.observation(False).signature(time_s=round(self.listened))

    def to_dict(self) -> TimingTestDict:
        return {"test": self.test, "port": self.port, "rtt_us": round(self.rtt_us) if self.rtt_us is not None else None,
                "arrivals": [round(a, 6) for a in self.arrivals], "rst": round(self.rst, 6) if self.rst is not None else None,
                "signature": self.signature(), "status": self.status, "stopped": self.stopped,
                "segment_ttl": self.seg_ttl,
                "listened_s": round(self.listened, 3),
                "synack": {"window": self.window, "ttl": self.ttl, "df": self.df, "options": self.options,
                           "mss": self.mss} if self.window is not None else None}




# ---------------------------------------------------------------------------------------------
# Verdicts per host: classification, SYN-relay detection, report lines
# ---------------------------------------------------------------------------------------------


def host_observations(results: list[TestResult]) -> list[TimingObservation]:
    """The observations of one host that carry evidence (the SYN-ACK header counted once)."""
    usable = [r for r in results if r.status == "ok"]
    usable.sort(key=lambda r: ("syn", "lastack", "finwait").index(r.test))
    return [r.observation(with_header=(i == 0)) for i, r in enumerate(usable)]


def syn_relay(results: list[TestResult]) -> SynRelay | None:
    """The seed's Nokia case: the SYN_RCVD test shows a stateless answer (one SYN-ACK, nothing
    retransmitted) while the connection tests show a stack that does retransmit, so the SYN was
    answered by SYN cookies or by something in front. A TTL on the SYN-ACK that differs from the
    TTL of the host's own segments says the answer came from another box ("syn-relay", e.g. an
    iptables SYNPROXY router); the same TTL leaves "syn-cookie" (the host itself, or a relay on
    the same hop that we cannot tell apart)."""
    syn = [r for r in results if r.test == "syn" and r.status == "ok"]
    conn = [r for r in results if r.test in ("lastack", "finwait") and r.status == "ok" and len(r.arrivals) >= 2]
    if not syn or not conn:
        return None
    s = syn[0]
    reasons = []
    if len(s.arrivals) == 1 and s.rst is None and s.listened >= 3.0:
        reasons.append("SYN-ACK never retransmitted (stateless SYN cookie answer)")
    relay = False
    for c in conn:
        if c.seg_ttl is not None and s.ttl is not None and c.seg_ttl != s.ttl:
            reasons.append(f"SYN-ACK TTL {s.ttl} but the host's own segments arrive with TTL {c.seg_ttl}")
            relay = True
            break
    if not reasons:
        return None
    return {"kind": "syn-relay" if relay else "syn-cookie", "reasons": reasons}


def _gaps_ms(times: list[float]) -> str:
    return ",".join(f"{(b - a) * 1000:.0f}" for a, b in zip(times, times[1:])) or "-"


def _class_gaps_ms(cls: TimingClass | None, test: str) -> str:
    ss = cls.schedules_for(test) if cls is not None else []
    if not ss:
        return "-"
    s = ss[0]
    n = len(s.gap_lo) - (1 if s.has_rst else 0)
    return ",".join(f"{lo * 1000:.0f}" if abs(hi - lo) < 1e-3 else f"{lo * 1000:.0f}-{hi * 1000:.0f}"
                    for lo, hi in zip(s.gap_lo[:n], s.gap_hi[:n])) or "-"


def host_report(clf: TimingClassifier, results: list[TestResult], db_name: str = "hostprint") -> HostReport:
    """The `os` entries of one host: timing block, architecture, Cron-OS fingerprint lines.

    timing block: db, tests, outcome (match | ambiguous | unknown | generic | no-response), matches
    (only for match / ambiguous: unknown and generic name no class), fitting, lines, and
      unknown: {nearest, distance, reasons}     why no class explains the packets
      generic: {schedule, initial_rto_s, evidence_lr, evidence, consistent, reason}   an RFC 6298
               default schedule whose header does not name an OS
      listen_limit_s: the --cron-timeout (or a stop) that ended a test before it ended by itself (else null)
      censored_ambiguous: labels of the classes that limit cannot separate (they differ only in
               packets due after it); empty when it separates them or nothing was cut
    """
    tests = [r.to_dict() for r in results]
    obs = host_observations(results)
    arch: list[ArchitectureDict] = []
    verdict: TimingVerdict | None = None
    relay = syn_relay(results)
    if relay:
        # classify the host behind the relay from the connection tests alone; the relay's own
        # answer is explained by the relay
        behind = [r.observation(with_header=False) for r in results
                  if r.test != "syn" and r.status == "ok"]
        vb = clf.classify_host(behind) if behind else None
        front = clf.classify_host([o for o in obs if o.test == "syn"])
        name = vb.best.label if vb is not None and vb.best is not None else "unknown stack"
        fname = front.best.label if front.best else "unknown"
        detail = (f"SYN relay in front ({fname}); host behind: {name}" if relay["kind"] == "syn-relay" else
                  f"SYN answered statelessly ({fname}: SYN cookies on the host or a same-hop SYN proxy); "
                  f"host: {name}")
        arch.append({"kind": relay["kind"], "detail": detail, "reasons": relay["reasons"]})
        verdict = vb
    elif obs:
        verdict = clf.classify_host(obs)
    limit = listen_limit(results)
    matches: list[MatchDict] = []
    censored: list[str] = []
    parts: _TimingReportParts = {}
    if verdict is not None:
        named = verdict.outcome in ("match", "ambiguous")
        fitting = verdict.fitting if named else []
        outcome = verdict.outcome
        # "unknown" and "generic" name no class: no matches, so no verdict can promote one
        matches = [{"name": c.label, "id": c.id, "family": c.family, "confidence": round(p, 4)}
                   for c, p in (verdict.ranked[:5] if named else [])]
        if verdict.outcome == "unknown":
            parts["unknown"] = {"nearest": verdict.nearest.label if verdict.nearest else None,
                                "distance": verdict.distance, "reasons": list(verdict.reasons)}
        if verdict.outcome == "generic" and verdict.generic is not None:
            gen = verdict.generic
            byid = {c.id: c.label for c in clf.classes}
            parts["generic"] = {**gen, "consistent": [byid.get(i, i) for i in gen.get("consistent", [])],
                                "reason": verdict.reasons[0] if verdict.reasons else ""}
        parts["fitting"] = [c.label for c, _ in fitting]
        if named and limit is not None:
            censored = [c.label for c in verdict.censored_ambiguous]
    else:
        outcome = "no-response"
    lines = terminal_lines(results, verdict, arch, limit)
    timing: TimingReport = {"db": db_name, "tests": tests, "matches": matches, "listen_limit_s": limit,
                            "censored_ambiguous": censored, "outcome": outcome, **parts, "lines": lines}
    # what XML <osfingerprint> and normal output carry: the guess line and the Cron-OS lines
    return {"timing": timing, "architecture": arch, "fingerprint": "\n".join(lines[:1] + cron_lines(results))}


def listen_limit(results: list[TestResult]) -> float | None:
    """The listen limit (--cron-timeout, or a stop that cut the run short) that ended a test before
    it ended on its own, in s (None when every test ended by itself: a RST, or the stop rule saw
    every class's next packet overdue)."""
    cut = [r.listened for r in results if r.status == "ok" and r.stopped in ("timeout", "interrupted")]
    return round(max(cut), 3) if cut else None


def cron_lines(results: list[TestResult]) -> list[str]:
    return [r.signature() for r in results if r.status == "ok"]


def terminal_lines(results: list[TestResult], verdict: TimingVerdict | None, arch: list[ArchitectureDict],
                   limit: float | None = None) -> list[str]:
    """nmap-cron-OS style: guesses with (Nsuccess/Mtests), then measured vs signature gaps."""
    ok = sum(1 for r in results if r.status == "ok")
    lines: list[str] = []
    if verdict is None:
        lines.append(f"Remote OS guesses: none (0success/{len(results)}tests)")
    elif verdict.outcome == "unknown":
        near = verdict.nearest.label if verdict.nearest else "?"
        d = verdict.distance
        res_s = float(d.get("timing_residual_s", -1.0))
        lines.append(f"Remote OS guesses: unknown stack ({ok}success/{len(results)}tests); nearest: {near} "
                     f"(header mismatches {float(d.get('header_mismatches', 0)):.0f}, timing residual "
                     f"{'no alignment' if res_s < 0 else f'{res_s:.3f} s'}, "
                     f"missing packets {float(d.get('missing_packets', 0)):.0f})")
        lines += [f"  Why unknown: {x}" for x in verdict.reasons]
    elif verdict.outcome == "generic":
        schedule = verdict.generic["schedule"] if verdict.generic else "?"
        lines.append(f"Remote OS guesses: none by timing ({ok}success/{len(results)}tests): RFC 6298 default "
                     f"schedule ({schedule}), names no OS by itself")
        lines += [f"  Why generic: {x}" for x in verdict.reasons]
    else:
        fit = verdict.fitting
        head = ", ".join(f"{c.label} ({p * 100:.0f}%)" for c, p in fit[:4])
        more = "" if verdict.outcome == "match" else " [several classes fit equally]"
        lines.append(f"Remote OS guesses: {head} ({ok}success/{len(results)}tests){more}")
    if limit is not None:
        amb = verdict.censored_ambiguous if verdict is not None and verdict.outcome in ("match", "ambiguous") else []
        tail = (f"; it cannot separate {', '.join(c.label for c in amb)} (they differ only in packets due after it)"
                if amb else "")
        why = "interrupted" if any(r.stopped == "interrupted" for r in results) else "--cron-timeout"
        lines.append(f"  Listen limit {round(limit, 1):g} s ({why}){tail}")
    best = (verdict.best or verdict.nearest) if verdict is not None else None
    for r in results:
        what = {"syn": "SYN_RCVD", "lastack": "LAST_ACK", "finwait": "FIN_WAIT1"}[r.test]
        rtt = f"{r.rtt_us / 1000:.2f}ms" if r.rtt_us is not None else "-"
        rst = f" RST at {r.rst:.3f}s" if r.rst is not None else ""
        lines.append(f"  {what:9} port {r.port}: {r.status}, {len(r.arrivals)} pkts, Connect={rtt}, "
                     f"gaps ms {_gaps_ms(r.arrivals)}{rst}  | {best.id if best else '-'}: {_class_gaps_ms(best, r.test)}")
    for a in arch:
        lines.append(f"  Architecture: {a['detail']}")
    return lines


def timing_evidence(clf: TimingClassifier, results: list[TestResult], db_name: str = "hostprint"
                    ) -> tuple[TimingBlock, list[ArchitectureFinding], str]:
    """The host's timing block, the architecture its tests revealed, and its fingerprint lines."""
    rep = host_report(clf, results, db_name)
    return (TimingBlock.from_dict("timing", rep["timing"]), ArchitectureFinding.many(rep["architecture"]),
            rep["fingerprint"])
