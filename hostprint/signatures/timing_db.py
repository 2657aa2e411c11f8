"""Timing (retransmission-schedule) signature databases: hostprint's own Cron-OS format and Hershel's.

Why one in-memory model for every source: the classifier should not care whether a class came from
hostprint's hand-written `timing.txt` (documented kernel behaviour), from the Hershel/Hershel+ scan
databases (50 noisy samples per class) or from a user's `learn` runs. Every source is reduced to
`TimingClass` = header expectations + one or more `Schedule`s (per test: syn / lastack / finwait),
where a schedule stores, per retransmission gap, the range seen for that stack.

Formats (details in the docstrings of the readers):
- hostprint / Cron-OS: nmap-style `Fingerprint` blocks holding `CronOS_Syn(...)`, `CronOS_LastAck(...)`,
  `CronOS_FinWait(...)` lines (p = gaps in µs, Connect = handshake RTT in µs) and a `CronOS_Hdr(...)`
  line for the SYN-ACK header features.
- Hershel 116 / Hershel+ 420: CSV rows `id, window, ttl, df, options, options_encoded, mss, rst_present,
  rst_ack, rst_window, [rst_sequence,] rst_nonzero, 0, t1, t2, ...` plus an `ID,Label` mapping file.
  The data is read from ../shared (or a user path) and never copied into the repository.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from hostprint.errors import UsageError

TESTS = ("syn", "lastack", "finwait")
CRONOS_KEYWORD = {"syn": "CronOS_Syn", "lastack": "CronOS_LastAck", "finwait": "CronOS_FinWait"}
KEYWORD_TEST = {v: k for k, v in CRONOS_KEYWORD.items()}
HEADER_FIELDS = ("window", "ttl", "df", "options", "mss", "rst")

# Initial TTLs seen in practice; an observed TTL is rounded up to one of these before matching
# (a reply that crossed h hops arrives with initial-h).
INITIAL_TTLS = (32, 64, 128, 255)

# The option letters used by Hershel's string form and its 3-bit encoding (read from the DB rows:
# MNWST <-> 7331 = 0o16243, i.e. M=1 W=2 T=3 S=4 E=5 N=6, most significant option first).
OPTION_CODES = {1: "M", 2: "W", 3: "T", 4: "S", 5: "E", 6: "N"}

#: seconds (gap ranges, packet offsets, observed packet times)
FloatArray = npt.NDArray[np.float64]
#: a SYN-ACK header field's value: an int (window, ttl, df, mss, rst code) or the options string
HeaderValue = int | str
#: per header field: value -> probability (a field left out is a wildcard)
Header = dict[str, dict[HeaderValue, float]]


def normalise_ttl(ttl: int) -> int:
    """Round an observed TTL up to the initial TTL it most likely started from."""
    for t in INITIAL_TTLS:
        if ttl <= t:
            return t
    return 255


def decode_options(encoded: int) -> str:
    """Hershel's/Faulds' packed option list (3 bits per option) -> option string such as 'MNWST'."""
    if encoded <= 0:
        return "X"
    letters = []
    while encoded > 0:
        letters.append(OPTION_CODES.get(encoded & 7, "?"))
        encoded >>= 3
    return "".join(reversed(letters))


def rst_code(present: int, ack: int, win3: int, nonzero: int) -> int:
    """The RST features packed as Faulds packs them: present<<4 | ack<<3 | win3<<1 | nonzero.

    win3 is ternary: 0 = RST window 0, 1 = same as the SYN-ACK window, 2 = another value.
    """
    return ((present & 1) << 4) | ((ack & 1) << 3) | ((win3 & 3) << 1) | (nonzero & 1)


def rst_win3(rst_window: int, window: int) -> int:
    if rst_window == 0:
        return 0
    return 1 if rst_window == window else 2


def rst_decode(code: int) -> tuple[int, int, int, int]:
    return (code >> 4) & 1, (code >> 3) & 1, (code >> 1) & 3, code & 1


class ScheduleOptions(TypedDict, total=False):
    """The optional fields of a Schedule, as keywords of its constructors."""

    weight: float
    time_s: float | None
    connect_us: float | None
    rtt_scaled: bool
    floor_s: float
    cap_s: float


@dataclass
class Schedule:
    """One test's retransmission schedule of one stack.

    Gaps are seconds between successive packets (first packet = first SYN-ACK / FIN; a final RST,
    when `has_rst`, is the last packet). `gap_lo`/`gap_hi` bound each gap (training samples' range,
    or the range a source documents); `pos_lo`/`pos_hi` bound each packet's offset from the first.
    """

    test: str
    gap_lo: FloatArray
    gap_hi: FloatArray
    pos_lo: FloatArray
    pos_hi: FloatArray
    has_rst: bool = False
    weight: float = 1.0
    time_s: float | None = None  # observation window the signature was recorded with
    connect_us: float | None = None  # handshake RTT the signature was recorded with
    rtt_scaled: bool = False  # the stack's timer follows the RTT (LAST_ACK/FIN_WAIT1 after a handshake)
    floor_s: float = 0.0  # that stack's minimum RTO (first gap never below it when scaling)
    cap_s: float = math.inf  # that stack's maximum RTO
    samples: list[FloatArray] = field(default_factory=list)  # raw packet offsets, when learned from data

    @property
    def n(self) -> int:
        return len(self.pos_lo)

    @staticmethod
    def from_gaps(test: str, lo: Iterable[float], hi: Iterable[float], has_rst: bool = False,
                  **kw: Unpack[ScheduleOptions]) -> Schedule:
        glo = np.asarray(list(lo), dtype=float)
        ghi = np.asarray(list(hi), dtype=float)
        if glo.shape != ghi.shape or np.any(ghi < glo) or np.any(glo < 0):
            raise ValueError("gap ranges must be non-negative and lo <= hi")
        plo = np.concatenate([[0.0], np.cumsum(glo)])
        phi = np.concatenate([[0.0], np.cumsum(ghi)])
        return Schedule(test, glo, ghi, plo, phi, has_rst=has_rst, **kw)

    @staticmethod
    def from_samples(test: str, samples: list[FloatArray], has_rst: bool,
                     **kw: Unpack[ScheduleOptions]) -> Schedule:
        """Ranges from equally long training samples (offsets from the first packet, first = 0)."""
        m = np.vstack(samples)
        m = m - m[:, :1]
        gaps = np.diff(m, axis=1)
        return Schedule(
            test,
            gaps.min(axis=0) if gaps.size else np.zeros(0),
            gaps.max(axis=0) if gaps.size else np.zeros(0),
            m.min(axis=0),
            m.max(axis=0),
            has_rst=has_rst,
            samples=list(m),
            **kw,
        )

    def scaled(self, measured_connect_us: float | None) -> Schedule:
        """This schedule adjusted to the RTT measured on the target.

        Why: after a handshake (LAST_ACK, FIN_WAIT1) RTO = SRTT + 4*RTTVAR with a per-stack floor and
        cap (RFC 6298 §2; reference notes §1.3, §5.8), so the gaps grow with the path RTT. Gap i is
        multiplied by measured/recorded Connect and kept within [floor * 2^i, cap] (the floor backs
        off with the timer). Schedules that do not follow the RTT come back unchanged.
        """
        if not self.rtt_scaled or not self.connect_us or not measured_connect_us or measured_connect_us <= 0:
            return self
        f = rtt_scale_factor(measured_connect_us, self.connect_us)
        floors = self.floor_s * (2.0 ** np.arange(len(self.gap_lo)))
        lo = np.minimum(np.maximum(self.gap_lo * f, floors), self.cap_s)
        hi = np.minimum(np.maximum(self.gap_hi * f, floors), self.cap_s)
        return Schedule.from_gaps(
            self.test, lo, hi, has_rst=self.has_rst, weight=self.weight, time_s=self.time_s,
            connect_us=measured_connect_us, rtt_scaled=False, floor_s=self.floor_s, cap_s=self.cap_s,
        )


def rtt_scale_factor(measured_connect_us: float, signature_connect_us: float) -> float:
    """measured / recorded handshake RTT (the seed's example: 38900 / 20000 = 1.945)."""
    if signature_connect_us <= 0:
        raise ValueError("signature Connect must be positive")
    return measured_connect_us / signature_connect_us


@dataclass
class TimingClass:
    """One stack class: what its SYN-ACK header looks like and how it retransmits.

    `header[field]` maps value -> probability; a field absent from `header` is a wildcard (the source
    does not pin it down, e.g. Linux's window depends on MSS and version).
    """

    id: str
    label: str
    family: str | None = None
    header: Header = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    source: str = ""  # where the entry comes from (comment lines of the DB file)

    def schedules_for(self, test: str) -> list[Schedule]:
        return [s for s in self.schedules if s.test == test]


@dataclass
class TimingDB:
    name: str
    classes: list[TimingClass]
    kind: str = "hostprint"  # "hostprint" | "hershel116" | "hershel420"

    def by_id(self) -> dict[str, TimingClass]:
        return {c.id: c for c in self.classes}


# ---------------------------------------------------------------------------------------------
# Hershel / Hershel+ CSV databases
# ---------------------------------------------------------------------------------------------


def _hershel_dir() -> Path:
    env = os.environ.get("HOSTPRINT_HERSHEL_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "datasets" / "hershel"


HERSHEL_NAMES = {
    "hershel420": ("420OS_db.txt", "420OS_mapping.txt"),
    "hershel116": ("116OS_db.txt", "116OS_mapping.txt"),
}


def hershel_paths(name: str) -> tuple[Path, Path]:
    db, mapping = HERSHEL_NAMES[name]
    d = _hershel_dir()
    return d / db, d / mapping


@dataclass
class HershelRow:
    """One sample row of a Hershel DB (or observation file) in a uniform shape."""

    class_id: int
    window: int
    ttl: int
    df: int
    options: str
    mss: int
    rst_present: int
    rst_ack: int
    rst_window: int
    rst_nonzero: int
    times: FloatArray  # packet offsets in seconds, first packet first; last = RST when rst_present


def _detect_hershel_layout(lines: list[list[str]]) -> int:
    """Number of header columns before the first time column: 11 (420 layout) or 12 (116 layout).

    The 116 layout has an extra rst_sequence column, so its column 12 is the '0.000000' RTT/first
    packet column, while in the 420 layout column 12 is the first retransmission time (> 0).
    """
    zero12 = total = 0
    for p in lines[:500]:
        if len(p) > 12:
            total += 1
            try:
                if float(p[12]) == 0.0:
                    zero12 += 1
            except ValueError:
                pass
    return 12 if total and zero12 / total > 0.5 else 11


def read_hershel_rows(path: str | Path) -> list[HershelRow]:
    """Parse a Hershel 116 / Hershel+ 420 DB file; bad lines raise UsageError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read timing DB {path}: {e.strerror}") from None
    raw = [(i + 1, [x.strip() for x in line.split(",")]) for i, line in enumerate(text.splitlines()) if line.strip()]
    ncols = _detect_hershel_layout([p for _, p in raw])
    rows: list[HershelRow] = []
    for lineno, p in raw:
        if len(p) < ncols + 1:
            raise UsageError(f"{path}:{lineno}: expected at least {ncols + 1} columns, got {len(p)}")
        try:
            times = np.asarray([float(x) for x in p[ncols:]], dtype=float)
            rst_nonzero_col = 11 if ncols == 12 else 10
            rows.append(
                HershelRow(
                    class_id=int(p[0]),
                    window=int(p[1]),
                    ttl=normalise_ttl(int(p[2])),
                    df=int(p[3]),
                    options=p[4] or "X",
                    mss=int(p[6]),
                    rst_present=int(p[7]),
                    rst_ack=int(p[8]),
                    rst_window=int(p[9]),
                    rst_nonzero=int(p[rst_nonzero_col]),
                    times=times - times[0],
                )
            )
        except ValueError as e:
            raise UsageError(f"{path}:{lineno}: {e}") from None
    if not rows:
        raise UsageError(f"{path}: no signature rows")
    return rows


def read_mapping(path: str | Path | None) -> dict[int, str]:
    """`ID,Label` lines (a header line is skipped); labels may contain commas."""
    if path is None:
        return {}
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise UsageError(f"cannot read timing DB mapping {path}: {e.strerror}") from None
    out: dict[int, str] = {}
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        k, _, v = line.partition(",")
        try:
            out[int(k)] = v.strip()
        except ValueError:
            if i == 0:
                continue  # header
            raise UsageError(f"{path}:{i + 1}: bad class id {k!r}") from None
    return out


def header_of_row(r: HershelRow) -> dict[str, HeaderValue]:
    return {
        "window": r.window,
        "ttl": r.ttl,
        "df": r.df,
        "options": r.options,
        "mss": r.mss,
        "rst": rst_code(r.rst_present, r.rst_ack, rst_win3(r.rst_window, r.window), r.rst_nonzero),
    }


def classes_from_rows(rows: list[HershelRow], mapping: dict[int, str], source: str) -> list[TimingClass]:
    """Group sample rows into classes: header value frequencies + one schedule per packet count."""
    by_class: dict[int, list[HershelRow]] = {}
    for r in rows:
        by_class.setdefault(r.class_id, []).append(r)
    out: list[TimingClass] = []
    for cid in sorted(by_class):
        rs = by_class[cid]
        header: Header = {f: {} for f in HEADER_FIELDS}
        for r in rs:
            for f, v in header_of_row(r).items():
                header[f][v] = header[f].get(v, 0.0) + 1.0
        header = {f: {v: n / len(rs) for v, n in d.items()} for f, d in header.items()}
        by_len: dict[int, list[FloatArray]] = {}
        rst_by_len: dict[int, int] = {}
        for r in rs:
            by_len.setdefault(len(r.times), []).append(r.times)
            rst_by_len[len(r.times)] = rst_by_len.get(len(r.times), 0) + r.rst_present
        scheds = [
            Schedule.from_samples("syn", samples, has_rst=rst_by_len[n] * 2 > len(samples),
                                  weight=len(samples) / len(rs))
            for n, samples in sorted(by_len.items())
        ]
        out.append(TimingClass(id=str(cid), label=mapping.get(cid, f"class {cid}"), header=header,
                               schedules=scheds, source=source))
    return out


def load_hershel(db_path: str | Path, mapping_path: str | Path | None, name: str = "hershel",
                 sample_filter: Callable[[int, int], bool] | None = None) -> TimingDB:
    """A Hershel-format DB as a TimingDB; `sample_filter(class_id, index_in_class)` keeps a subset
    (the benchmark builds its DB from samples 0-39 of each class)."""
    rows = read_hershel_rows(db_path)
    if sample_filter is not None:
        seen: dict[int, int] = {}
        kept: list[HershelRow] = []
        for r in rows:
            i = seen.get(r.class_id, 0)
            seen[r.class_id] = i + 1
            if sample_filter(r.class_id, i):
                kept.append(r)
        rows = kept
    return TimingDB(name=name, classes=classes_from_rows(rows, read_mapping(mapping_path), str(db_path)),
                    kind=name if name in HERSHEL_NAMES else "hershel")


# ---------------------------------------------------------------------------------------------
# Cron-OS lines and hostprint's own DB format
# ---------------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"^(CronOS_[A-Za-z]+)\((.*)\)\s*$")


@dataclass
class CronOSLine:
    """One `CronOS_<Test>(k=v%k=v...)` line, with p values as (lo, hi) µs ranges.

    Standard keys: nbPkt, Time (s), Connect (µs), p (gap µs, repeated). hostprint extensions, all
    optional: R (gap in µs from the last retransmission to a final RST), Scale=rtt, Floor and Cap
    (µs, the stack's RTO floor and cap used when scaling by Connect).
    """

    test: str
    nb_pkt: int
    time_s: float | None = None
    connect_us: float | None = None
    gaps_us: list[tuple[float, float]] = field(default_factory=list)
    rst_gap_us: tuple[float, float] | None = None
    rtt_scaled: bool = False
    floor_us: float | None = None
    cap_us: float | None = None

    def to_schedule(self) -> Schedule:
        lo = [a / 1e6 for a, _ in self.gaps_us]
        hi = [b / 1e6 for _, b in self.gaps_us]
        if self.rst_gap_us is not None:
            lo.append(self.rst_gap_us[0] / 1e6)
            hi.append(self.rst_gap_us[1] / 1e6)
        return Schedule.from_gaps(
            self.test, lo, hi, has_rst=self.rst_gap_us is not None, time_s=self.time_s,
            connect_us=self.connect_us, rtt_scaled=self.rtt_scaled,
            floor_s=(self.floor_us or 0.0) / 1e6, cap_s=(self.cap_us / 1e6) if self.cap_us else math.inf,
        )


def _fmt_range(r: tuple[float, float]) -> str:
    a, b = int(round(r[0])), int(round(r[1]))
    return str(a) if a == b else f"{a}-{b}"


def format_cronos(line: CronOSLine) -> str:
    parts = [f"nbPkt={line.nb_pkt}"]
    if line.time_s is not None:
        parts.append(f"Time={line.time_s:g}")
    if line.connect_us is not None:
        parts.append(f"Connect={int(round(line.connect_us))}")
    parts += [f"p={_fmt_range(g)}" for g in line.gaps_us]
    if line.rst_gap_us is not None:
        parts.append(f"R={_fmt_range(line.rst_gap_us)}")
    if line.rtt_scaled:
        parts.append("Scale=rtt")
    if line.floor_us is not None:
        parts.append(f"Floor={int(round(line.floor_us))}")
    if line.cap_us is not None:
        parts.append(f"Cap={int(round(line.cap_us))}")
    return f"{CRONOS_KEYWORD[line.test]}({'%'.join(parts)})"


def _parse_range(v: str, where: str) -> tuple[float, float]:
    a, sep, b = v.partition("-")
    try:
        lo = float(a)
        hi = float(b) if sep else lo
    except ValueError:
        raise UsageError(f"{where}: bad number {v!r}") from None
    if lo < 0 or hi < lo:
        raise UsageError(f"{where}: bad range {v!r}")
    return lo, hi


def parse_cronos(text: str, where: str = "<line>") -> CronOSLine:
    """Parse one Cron-OS line; `where` (file:line) names the place in error messages."""
    m = _LINE_RE.match(text.strip())
    if not m or m.group(1) not in KEYWORD_TEST:
        raise UsageError(f"{where}: not a CronOS_Syn/LastAck/FinWait line: {text.strip()[:60]!r}")
    line = CronOSLine(test=KEYWORD_TEST[m.group(1)], nb_pkt=-1)
    for item in filter(None, m.group(2).split("%")):
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"{where}: expected key=value, got {item!r}")
        if k == "nbPkt":
            try:
                line.nb_pkt = int(v)
            except ValueError:
                raise UsageError(f"{where}: bad nbPkt {v!r}") from None
        elif k == "Time":
            line.time_s = _parse_range(v, where)[0]
        elif k == "Connect":
            line.connect_us = _parse_range(v, where)[0]
        elif k == "p":
            line.gaps_us.append(_parse_range(v, where))
        elif k == "R":
            line.rst_gap_us = _parse_range(v, where)
        elif k == "Scale":
            if v != "rtt":
                raise UsageError(f"{where}: Scale must be 'rtt', got {v!r}")
            line.rtt_scaled = True
        elif k == "Floor":
            line.floor_us = _parse_range(v, where)[0]
        elif k == "Cap":
            line.cap_us = _parse_range(v, where)[0]
        else:
            raise UsageError(f"{where}: unknown Cron-OS key {k!r}")
    if line.nb_pkt < 0:
        line.nb_pkt = len(line.gaps_us)
    if line.nb_pkt != len(line.gaps_us):
        raise UsageError(f"{where}: nbPkt={line.nb_pkt} but {len(line.gaps_us)} p= values")
    if line.rtt_scaled and line.connect_us is None:
        raise UsageError(f"{where}: Scale=rtt needs Connect=")
    return line


def cronos_from_times(test: str, times: Iterable[float], rst_time: float | None = None,
                      time_s: float | None = None, connect_us: float | None = None) -> CronOSLine:
    """A measured schedule as a Cron-OS line (what `hostprint timing` prints and `learn` stores)."""
    t = sorted(float(x) for x in times)
    gaps = [((b - a) * 1e6, (b - a) * 1e6) for a, b in zip(t, t[1:])]
    rst = None
    if rst_time is not None and t:
        g = (rst_time - t[-1]) * 1e6
        rst = (g, g)
    return CronOSLine(test=test, nb_pkt=len(gaps), time_s=time_s, connect_us=connect_us, gaps_us=gaps,
                      rst_gap_us=rst)


# CronOS_Hdr(W=8192|65535%TTL=128%DF=1%O=MNWST%MSS=1460%RST=0) -- hostprint's header line.
# RST value: 0 (no RST) or R[A][W0|W1|W2][N]: A = RST carries ACK, W = window class (0, same as
# SYN-ACK, other), N = non-zero ACK field. A field left out is a wildcard.
_HDR_KEYS = {"W": "window", "TTL": "ttl", "DF": "df", "O": "options", "MSS": "mss", "RST": "rst"}


def parse_rst_token(tok: str, where: str) -> int:
    if tok == "0":
        return 0
    m = re.fullmatch(r"R(A?)(?:W([012]))?(N?)", tok)
    if not m:
        raise UsageError(f"{where}: bad RST value {tok!r} (use 0 or R[A][W0|W1|W2][N])")
    return rst_code(1, 1 if m.group(1) else 0, int(m.group(2) or 0), 1 if m.group(3) else 0)


def format_rst_token(code: int) -> str:
    present, ack, w3, nz = rst_decode(code)
    if not present:
        return "0"
    return "R" + ("A" if ack else "") + f"W{w3}" + ("N" if nz else "")


def parse_header_line(text: str, where: str) -> Header:
    m = re.fullmatch(r"CronOS_Hdr\((.*)\)", text.strip())
    if not m:
        raise UsageError(f"{where}: bad CronOS_Hdr line")
    out: Header = {}
    for item in filter(None, m.group(1).split("%")):
        k, sep, v = item.partition("=")
        if not sep or k not in _HDR_KEYS:
            raise UsageError(f"{where}: unknown header key {item!r}")
        fld = _HDR_KEYS[k]
        if v == "*":
            continue
        alts = v.split("|")
        vals: list[HeaderValue] = []
        for a in alts:
            if fld == "options":
                if not re.fullmatch(r"[MNWSTEX]+", a):
                    raise UsageError(f"{where}: bad options {a!r}")
                vals.append(a)
            elif fld == "rst":
                vals.append(parse_rst_token(a, where))
            else:
                try:
                    iv = int(a)
                except ValueError:
                    raise UsageError(f"{where}: bad {k} value {a!r}") from None
                vals.append(normalise_ttl(iv) if fld == "ttl" else iv)
        out[fld] = {x: 1.0 / len(vals) for x in vals}
    return out


def format_header_line(header: Header) -> str:
    parts = []
    for k, fld in _HDR_KEYS.items():
        vals = header.get(fld)
        if not vals:
            continue
        txt = [format_rst_token(int(v)) if fld == "rst" else str(v) for v in vals]
        parts.append(f"{k}={'|'.join(txt)}")
    return f"CronOS_Hdr({'%'.join(parts)})"


#: what the classifier reads of one schedule: test, RST, gap ranges (µs), weight and, for an
#: RTT-scaled one, Connect, floor and cap (Time= is the recording's listen window: not scored)
_ScoredSchedule = tuple[str, bool, tuple[float, ...], tuple[float, ...], float,
                        tuple[float | None, float, float] | None]
_ScoredClass = tuple[frozenset[tuple[str, frozenset[tuple[HeaderValue, float]]]], tuple[_ScoredSchedule, ...]]


def _scored_class(c: TimingClass) -> _ScoredClass:
    """The part of a class the classifier scores (not its id, label, family or notes): two classes
    with the same key score alike on every observation."""
    header = frozenset((f, frozenset(d.items())) for f, d in c.header.items() if d)
    scheds: list[_ScoredSchedule] = [
        (s.test, s.has_rst, tuple(float(x) for x in s.gap_lo), tuple(float(x) for x in s.gap_hi), s.weight,
         (s.connect_us, s.floor_s, s.cap_s) if s.rtt_scaled else None)
        for s in c.schedules
    ]
    return header, tuple(sorted(scheds, key=repr))


def read_cronos_db(path: str | Path, text: str | None = None) -> TimingDB:
    """hostprint's own timing DB: nmap-style blocks.

        # comment lines before a block are its source notes
        Fingerprint Linux 3.1 and later
        Class Linux | Linux | 3.X | general purpose
        CronOS_Hdr(TTL=64%DF=1%O=MSTNW%RST=0)
        CronOS_Syn(nbPkt=5%Time=63%p=1000000-1130000%...)

    `Fingerprint` starts a class (its text is the label), `Class` gives vendor | family | gen | type,
    optional `Id` overrides the generated id. Several CronOS_Syn lines in one block are alternative
    schedules of the same stack.

    Every fact must say where it comes from, so a class without source notes is refused, and so is a
    class an earlier one fully shadows (the same id again, or the same header fields and schedules:
    it would tie with the earlier class on every observation and ties go to the earlier one, so it
    could never win). Errors name file:line of the refused class's Fingerprint line.
    """
    path = Path(path)
    if text is None:
        try:
            text = path.read_text()
        except OSError as e:
            raise UsageError(f"cannot read timing DB {path}: {e.strerror}") from None
    classes: list[TimingClass] = []
    starts: list[int] = []  # line of each class's Fingerprint line
    cur: TimingClass | None = None
    notes: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        line = raw.strip()
        if not line:
            if cur is None or cur.schedules:
                notes = []  # a blank line ends a comment paragraph that no block claimed
            continue
        if line.startswith("#"):
            if cur is not None and cur.schedules:
                cur = None  # a comment after a finished block starts the next block's notes
            notes.append(line.lstrip("# "))
            continue
        key, _, rest = line.partition(" ")
        if key == "Fingerprint":
            if not rest.strip():
                raise UsageError(f"{where}: Fingerprint needs a name")
            cid = re.sub(r"[^a-z0-9]+", "-", rest.strip().lower()).strip("-")
            cur = TimingClass(id=cid, label=rest.strip(), source=" ".join(notes))
            notes = []
            classes.append(cur)
            starts.append(lineno)
            continue
        if cur is None:
            raise UsageError(f"{where}: {key!r} outside a Fingerprint block")
        if key == "Class":
            fields = [x.strip() for x in rest.split("|")]
            cur.family = fields[1] if len(fields) > 1 and fields[1] else fields[0]
        elif key == "Id":
            cur.id = rest.strip()
        elif line.startswith("CronOS_Hdr("):
            cur.header = parse_header_line(line, where)
        elif line.startswith("CronOS_"):
            cl = parse_cronos(line, where)
            cur.schedules.append(cl.to_schedule())
        else:
            raise UsageError(f"{where}: unknown line {key!r}")
    ids: dict[str, int] = {}
    scored: dict[_ScoredClass, tuple[TimingClass, int]] = {}
    for c, start in zip(classes, starts):
        where = f"{path}:{start}"
        if c.id in ids:
            raise UsageError(f"{where}: class id {c.id!r} is shadowed by the class with that id at line "
                             f"{ids[c.id]} (it could never be used)")
        ids[c.id] = start
        if not c.source.strip():
            raise UsageError(f"{where}: class {c.label!r} has no source: comment lines right before its "
                             "Fingerprint line must say where the entry comes from")
        if not c.schedules:
            raise UsageError(f"{where}: class {c.label!r} has no CronOS_ schedule line")
        # Schedules of one test are alternatives of each other: their weights sum to 1 per test
        # (normalising over all tests of a class cost every test ~1.1 nats for 3-test classes).
        per_test: dict[str, float] = {}
        for s in c.schedules:
            per_test[s.test] = per_test.get(s.test, 0.0) + s.weight
        for s in c.schedules:
            s.weight /= per_test[s.test]
        sk = _scored_class(c)
        if sk in scored:
            first, first_line = scored[sk]
            raise UsageError(f"{where}: class {c.label!r} has the same header fields and schedules as "
                             f"{first.label!r} (line {first_line}), which shadows it (it could never win)")
        scored[sk] = (c, start)
    if not classes:
        raise UsageError(f"{path}: no Fingerprint blocks")
    return TimingDB(name=str(path), classes=classes, kind="hostprint")


def format_class(c: TimingClass) -> str:
    """One class as a block of hostprint's format (what `learn` appends to a user's DB)."""
    out = [f"# {c.source}"] if c.source else []
    out.append(f"Fingerprint {c.label}")
    if c.family:
        out.append(f"Class {c.family} | {c.family} | | ")
    out.append(f"Id {c.id}")
    if c.header:
        out.append(format_header_line(c.header))
    for s in c.schedules:
        gaps = list(zip(s.gap_lo * 1e6, s.gap_hi * 1e6))
        rst = None
        if s.has_rst and gaps:
            rst = gaps.pop()
        out.append(format_cronos(CronOSLine(
            test=s.test, nb_pkt=len(gaps), time_s=s.time_s, connect_us=s.connect_us, gaps_us=gaps,
            rst_gap_us=rst, rtt_scaled=s.rtt_scaled, floor_us=s.floor_s * 1e6 if s.floor_s else None,
            cap_us=s.cap_s * 1e6 if math.isfinite(s.cap_s) else None)))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Header background: how common a SYN-ACK header value is among stacks in general
# ---------------------------------------------------------------------------------------------

BUILTIN_BACKGROUND = Path(__file__).with_name("timing_background.txt")
_BG_FIELDS = ("ttl", "df", "options", "mss", "window")


@dataclass
class HeaderBackground:
    """Population frequencies of header values (timing_background.txt): `probs[field][value]`, and
    `other[field]` = the probability of any one value not listed."""

    probs: Header
    other: dict[str, float]

    def p(self, fld: str, value: HeaderValue) -> float | None:
        """Frequency of `value` in field `fld`; None when the field has no background."""
        if fld not in self.probs:
            return None
        return self.probs[fld].get(value, self.other.get(fld, 0.0))


def read_background(path: str | Path = BUILTIN_BACKGROUND) -> HeaderBackground:
    """`Background <field> value=p ... [*=MASS/N]` lines; '#' comments. Errors name file:line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read timing background {path}: {e.strerror}") from None
    probs: Header = {}
    other: dict[str, float] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        parts = line.split()
        if len(parts) < 3 or parts[0] != "Background" or parts[1] not in _BG_FIELDS:
            raise UsageError(f"{where}: expected 'Background <{'|'.join(_BG_FIELDS)}> value=p ...'")
        fld = parts[1]
        vals: dict[HeaderValue, float] = {}
        for item in parts[2:]:
            k, sep, v = item.partition("=")
            try:
                if k == "*":
                    mass, _, cnt = v.partition("/")
                    other[fld] = float(mass) / max(int(cnt or 1), 1)
                    continue
                prob = float(v)
                key: HeaderValue = k if fld == "options" else int(k)
            except ValueError:
                raise UsageError(f"{where}: bad item {item!r}") from None
            if not sep or not 0 < prob <= 1:
                raise UsageError(f"{where}: bad item {item!r}")
            vals[key] = prob
        probs[fld] = vals
        other.setdefault(fld, min(vals.values()) / 2 if vals else 0.01)
    return HeaderBackground(probs, other)


# ---------------------------------------------------------------------------------------------
# Resolving --timing-db
# ---------------------------------------------------------------------------------------------

BUILTIN_DB = Path(__file__).with_name("timing.txt")


def _looks_like_cronos(path: Path) -> bool:
    try:
        with path.open(errors="replace") as fh:
            head = fh.read(4096)
    except OSError as e:
        raise UsageError(f"cannot read timing DB {path}: {e.strerror}") from None
    return "Fingerprint" in head or "CronOS_" in head


def resolve_timing_db(spec: str | None, mapping: str | None = None) -> TimingDB:
    """`--timing-db` value -> TimingDB. `None`/'hostprint' = the shipped timing.txt; 'hershel420' /
    'hershel116' = the Hershel DBs under ../shared/datasets/hershel (or $HOSTPRINT_HERSHEL_DIR);
    anything else is a path in hostprint's or Hershel's format (auto-detected)."""
    if spec in (None, "", "hostprint", "builtin"):
        return read_cronos_db(BUILTIN_DB)
    if spec in HERSHEL_NAMES:
        db, mp = hershel_paths(spec)
        if not db.exists():
            raise UsageError(f"--timing-db {spec}: {db} not found (set HOSTPRINT_HERSHEL_DIR)")
        return load_hershel(db, mapping or (mp if mp.exists() else None), name=spec)
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"--timing-db {spec}: no such file (or use hostprint, hershel420, hershel116)")
    if _looks_like_cronos(path):
        if mapping:
            raise UsageError(f"--timing-db-mapping {mapping}: only for Hershel-format DBs")
        return read_cronos_db(path)
    return load_hershel(path, mapping, name=path.name)
