"""The HTML report: one self-contained file a person opens to see what a run found and why.

Why one file with inline CSS and SVG and no script: reports get mailed, attached to tickets and
opened on air-gapped machines; a page that fetches fonts, scripts or images leaks that it was
opened (and from where) and breaks offline. Everything that came off the wire (banners, labels,
hostnames) is escaped, because a hostile service chooses its own banner.

Inputs are the stored `ScanRun`: the typed OS evidence of each host (model.OsEvidence: the
combined matches or "unknown", architecture findings, the stack and timing blocks; stored runs of
any version were read through OsEvidence.from_dict, which drops what does not fit) and
`.sequence` ({"isn": {..., values?, times?}, "ip_id": {class, values, times?}, "tcp_ts": {...}},
values plotted when present; times in seconds), tolerated when malformed.
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any

from hostprint import __version__
from hostprint.model import OPEN, Evidence, HostResult, ScanRun
from hostprint.report import nmapstyle as ns
from hostprint.report.diff import RunDiff, best_os
from hostprint.report.plots import LANE_COLOURS, Lane, fmt_num, fmt_seconds, line_chart_svg, timeline_svg
from hostprint.report.scripts import service_scripts

TEST_TITLES = {
    "syn": "SYN_RCVD test — SYN-ACK retransmissions",
    "lastack": "LAST_ACK test — FIN retransmissions",
    "finwait": "FIN_WAIT1 test — FIN retransmissions",
}

IP_ID_CLASSES = {
    "Z": "all zero",
    "RD": "random",
    "RI": "random positive increments",
    "BI": "broken increment (byte-swapped)",
    "I": "incremental",
    "fixed": "constant",
}

CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --panel:#f9fafb; --accent:#2563eb;
        --ok:#047857; --warn:#b45309; --bad:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; background:#f3f4f6; color:var(--fg);
       font: 14px/1.5 "Noto Sans", "DejaVu Sans", "Liberation Sans", "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
header.page { background: #111827; color: #f9fafb; padding: 22px 28px; }
header.page .inner { max-width: 1180px; margin: 0 auto; }
header.page h1 { margin: 0 0 4px; font-size: 24px; font-weight: 700; letter-spacing: .2px; }
header.page .meta { color: #d1d5db; font-size: 13px; }
header.page code { color: #f9fafb; background: #1f2937; padding: 1px 6px; border-radius: 4px; }
h2 { font-size: 19px; margin: 30px 0 12px; }
h3 { font-size: 16px; margin: 22px 0 8px; }
h4 { font-size: 14px; margin: 16px 0 6px; color: #374151; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin-top: 18px; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 10px; padding: 12px 18px;
        min-width: 150px; }
.card .n { font-size: 26px; font-weight: 700; }
.card .l { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
section.panel { background: var(--bg); border: 1px solid var(--line); border-radius: 10px;
                padding: 6px 22px 18px; margin: 18px 0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted);
     background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: none; }
code, pre, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace;
                   font-size: 12.5px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px;
      white-space: pre-wrap; word-break: break-all; margin: 6px 0; }
a { color: var(--accent); text-decoration: none; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
         border: 1px solid transparent; white-space: nowrap; }
.s-open, .s-up, .k-opened, .k-appeared { background: #ecfdf5; color: var(--ok); border-color: #a7f3d0; }
.s-closed, .s-down, .k-closed, .k-went-away { background: #fef2f2; color: var(--bad); border-color: #fecaca; }
.s-filtered, .s-other, .k-changed { background: #fffbeb; color: var(--warn); border-color: #fde68a; }
.arch { background: #eef2ff; color: #3730a3; border-color: #c7d2fe; }
.muted { color: var(--muted); }
.conf { display: inline-flex; align-items: center; gap: 8px; }
.bar { width: 110px; height: 8px; border-radius: 4px; background: var(--line); overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--ok); }
ul.evidence { margin: 0; padding-left: 18px; }
ul.evidence li { margin: 1px 0; }
.method { font-size: 11px; font-weight: 700; color: #374151; background: #e5e7eb; border-radius: 4px;
          padding: 0 5px; margin-right: 4px; text-transform: uppercase; letter-spacing: .3px; }
.hosthead { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.hosthead h2 { margin: 16px 0 4px; }
.facts { color: #374151; font-size: 13px; margin-bottom: 6px; }
.facts span + span::before { content: "·"; margin: 0 8px; color: var(--muted); }
figure { margin: 10px 0 18px; }
figure svg { max-width: 100%; height: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
.seqgrid { display: flex; flex-wrap: wrap; gap: 16px; }
.seqgrid figure { margin: 4px 0; }
.verdict-best td { background: #f0fdf4; }
footer { color: var(--muted); font-size: 12px; margin-top: 30px; }
.badge.zero { background: #f3f4f6; color: var(--muted); border-color: var(--line); }
h2 code { font-size: 16px; background: var(--panel); padding: 1px 6px; border-radius: 4px; }
.diffsum { display: flex; gap: 8px; flex-wrap: wrap; margin: 6px 0 10px; }
"""


# ---------------------------------------------------------------------------------------------- small helpers


def _e(x: object) -> str:
    return escape("" if x is None else str(x))


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _when(ts: float | None) -> str:
    if ts is None or _num(ts) is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def _anchor(address: str) -> str:
    return "host-" + "".join(ch if ch.isalnum() else "-" for ch in address)


def _state_badge(state: str) -> str:
    cls = {"open": "s-open", "closed": "s-closed", "filtered": "s-filtered", "up": "s-up",
           "down": "s-down"}.get(state, "s-other")
    return f'<span class="badge {cls}">{_e(state)}</span>'


def _confidence(c: object) -> str:
    f = _num(c)
    if f is None:
        return '<span class="muted">—</span>'
    pct = max(0.0, min(100.0, f * 100 if f <= 1 else f))
    return (f'<span class="conf"><span class="bar"><span style="width:{pct:.0f}%"></span></span>'
            f"{pct:.0f}%</span>")


def _list(v: object) -> list:
    return v if isinstance(v, list) else []


def _dict(v: object) -> dict:
    return v if isinstance(v, dict) else {}


def _dicts(v: object) -> list[dict]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


# ---------------------------------------------------------------------------------------------- timing


def _pairs(seq: object) -> list[tuple[float, float]] | None:
    """[1.0, [2.0, 2.3], ...] -> [(1.0, 1.0), (2.0, 2.3), ...]; None when anything is malformed."""
    if not isinstance(seq, (list, tuple)):
        return None
    out = []
    for v in seq:
        n = _num(v)
        if n is not None:
            out.append((n, n))
        elif isinstance(v, (list, tuple)) and len(v) == 2 and _num(v[0]) is not None and _num(v[1]) is not None:
            lo, hi = float(v[0]), float(v[1])
            out.append((min(lo, hi), max(lo, hi)))
        else:
            return None
    return out


class SignatureSource:
    """Looks up a timing match's class in the timing DB (loaded once, only when needed)."""

    def __init__(self, spec: str | None = None):
        self.spec = spec
        self._dbs: dict[str | None, Any] = {}

    def _db(self, spec: str | None) -> Any:
        if spec not in self._dbs:
            from hostprint.errors import UsageError
            from hostprint.signatures.timing_db import resolve_timing_db

            try:
                self._dbs[spec] = resolve_timing_db(spec)
            except (UsageError, OSError, ValueError):
                self._dbs[spec] = None
        return self._dbs[spec]

    def find(self, match: dict, db_name: object = None) -> Any:
        specs: list[str | None] = [self.spec] if self.spec else []
        if isinstance(db_name, str) and db_name:
            specs.append(db_name)
        specs.append(None)
        cid, label = match.get("class") or match.get("id"), match.get("label") or match.get("name")
        for spec in dict.fromkeys(specs):
            db = self._db(spec)
            if db is None:
                continue
            for c in db.classes:
                if (cid and c.id == cid) or (not cid and label and c.label == label):
                    return c
        return None


def _best_schedule(cls: Any, test: str, rel: list[float], rtt_us: float | None) -> Any:
    """Of a class's alternative schedules for this test, the one closest to what was measured."""
    best, best_cost = None, math.inf
    for s in cls.schedules_for(test):
        s = s.scaled(rtt_us)
        mid = [(a + b) / 2 for a, b in zip(s.pos_lo, s.pos_hi)]
        k = min(len(mid), len(rel))
        cost = sum(abs(rel[i] - mid[i]) for i in range(k)) + 5.0 * abs(len(rel) - len(mid))
        if cost < best_cost:
            best, best_cost = s, cost
    return best


def signature_instants(match: dict, test: dict, source: SignatureSource, db_name: object = None
                       ) -> tuple[list[tuple[float, float]], tuple[float, float] | None, str] | None:
    """The signature's packet instants (seconds, relative to its first packet) and its RST.

    Taken from the match itself when the classifier stored them ("arrivals" = instants, "gaps" =
    successive gaps, either as numbers or [lo, hi] ranges, optionally per test in a dict), else
    derived from the class in the timing DB. Returns (ranges, rst_range, where-from) or None.
    """
    name = str(test.get("test") or "syn")
    for key in ("arrivals", "gaps"):
        raw = match.get(key)
        if isinstance(raw, dict):
            raw = raw.get(name)
        pairs = _pairs(raw)
        if not pairs:
            continue
        if key == "gaps":
            lo = hi = 0.0
            inst = [(0.0, 0.0)]
            for a, b in pairs:
                lo, hi = lo + a, hi + b
                inst.append((lo, hi))
        else:
            base = pairs[0][0]
            inst = [(a - base, b - base) for a, b in pairs]
        rst = None
        rp = _pairs([match["rst"]]) if key == "arrivals" and match.get("rst") is not None else None
        if rp:
            rst = (rp[0][0] - pairs[0][0], rp[0][1] - pairs[0][0])
        return inst, rst, "stored with the match"
    cls = source.find(match, db_name)
    if cls is None:
        return None
    arrivals = sorted(x for x in (_num(v) for v in _list(test.get("arrivals"))) if x is not None)
    rel = [a - arrivals[0] for a in arrivals] if arrivals else []
    rst_t = _num(test.get("rst"))
    if rst_t is not None and arrivals:
        rel.append(rst_t - arrivals[0])
    s = _best_schedule(cls, name, rel, _num(test.get("rtt_us")))
    if s is None:
        return None
    inst = [(float(a), float(b)) for a, b in zip(s.pos_lo, s.pos_hi)]
    rst = inst.pop() if s.has_rst and inst else None
    return inst, rst, f"timing DB class {cls.id}"


def _match_label(m: dict) -> str:
    return str(m.get("label") or m.get("name") or m.get("class") or m.get("id") or "?")


def _range_text(r: tuple[float, float] | None) -> str:
    if r is None:
        return "—"
    a, b = r
    return f"{fmt_seconds(a)}" if abs(b - a) < 1e-9 else f"{fmt_seconds(a)} – {fmt_seconds(b)}"


def timing_section(h: HostResult, source: SignatureSource) -> str:
    tb = h.os.timing
    if tb is None:
        return ""
    # the plot helpers take the JSON form of tests and matches (a match may carry its own instants)
    tests = [t.to_dict() for t in tb.tests]
    host_matches: list[dict[str, Any]] = [m.to_dict() for m in tb.matches]
    if not tests and not host_matches:
        return ""
    out = ['<h3>Retransmission timing</h3>']
    outcome = tb.outcome
    nearest = tb.unknown.nearest if tb.unknown is not None else None
    if host_matches:
        m0 = host_matches[0]
        out.append(f'<p>Timing verdict: <b>{_e(_match_label(m0))}</b> {_confidence(m0.get("confidence"))}')
        if outcome:
            out.append(f' <span class="muted">({_e(outcome)})</span>')
        out.append("</p>")
    elif outcome:
        out.append(f"<p>Timing verdict: <b>{_e(outcome)}</b>"
                   + (f' <span class="muted">(nearest known stack: {_e(nearest)})</span>' if nearest else "")
                   + "</p>")
    why = (tb.unknown.reasons if tb.unknown is not None else []) + [n.detail for n in tb.notes()]
    if why:  # why no class was named, what the listen limit could not separate
        out.append('<ul class="evidence muted">' + "".join(f"<li>{_e(w)}</li>" for w in why) + "</ul>")
    for t in tests:
        name = str(t.get("test") or "syn")
        arrivals = sorted(x for x in (_num(v) for v in _list(t.get("arrivals"))) if x is not None)
        rst = _num(t.get("rst"))
        lanes = [Lane("measured", "measured", [(a, a) for a in arrivals], (rst, rst) if rst is not None else None,
                      note=f"{len(arrivals)} packets" + (" + RST" if rst is not None else ""))]
        matches = _dicts(t.get("matches")) or host_matches
        roles: tuple[str, ...] = ("best match", "runner-up")
        if not matches and nearest:  # "unknown stack": still show what it was closest to
            matches, roles = [{"name": nearest}], ("nearest known stack",)
        sig_rows: list[tuple[str, list[tuple[float, float]], tuple[float, float] | None]] = []
        first = arrivals[0] if arrivals else 0.0
        for role, m in zip(roles, matches[:2]):
            got = signature_instants(m, t, source, tb.db)
            label = _match_label(m)
            conf = _num(m.get("confidence"))
            note = role + (f", {conf * 100:.0f} %" if conf is not None and conf <= 1 else "")
            if got is None:
                lanes.append(Lane(label, "signature", [], None, note=note + " — no signature for this test",
                                  title=label))
                sig_rows.append((label, [], None))
                continue
            inst, srst, origin = got
            shifted = [(a + first, b + first) for a, b in inst]
            srst_s = (srst[0] + first, srst[1] + first) if srst else None
            lanes.append(Lane(label, "signature", shifted, srst_s, note=note, title=f"{label} ({origin})"))
            sig_rows.append((label, shifted, srst_s))
        port = t.get("port")
        title = TEST_TITLES.get(name, name) + (f", port {port}" if port is not None else "")
        status = t.get("status")
        out.append(f'<h4>{_e(title)}'
                   + (f' <span class="badge s-other">{_e(status)}</span>' if status and status != "ok" else "")
                   + "</h4>")
        rtt = _num(t.get("rtt_us"))
        caption = ("Measured packet instants against the best matching signature and the runner-up."
                   + (f" Handshake RTT {ns.seconds_sig2(rtt / 1e6)} s." if rtt is not None and rtt > 0 else ""))
        out.append(f'<figure class="timing" data-test="{_e(name)}">'
                   f"{timeline_svg(lanes, caption=title, until=_axis_end(t, arrivals, rst))}"
                   f"<figcaption>{_e(caption)}</figcaption></figure>")
        out.append(_instants_table(arrivals, rst, sig_rows))
        if t.get("signature"):
            out.append(f'<pre class="signature">{_e(t.get("signature"))}</pre>')
    return "".join(out)


def _axis_end(test: dict, arrivals: list[float], rst: float | None) -> float | None:
    """How far the plot's time axis goes: as long as we listened when the test says so, else half
    again the last measured packet; None (the whole signature) when nothing was measured."""
    last = max(arrivals + ([rst] if rst is not None else []), default=None)
    listened = _num(test.get("listened_s"))
    if listened is not None and listened > 0:
        return max(listened, last or 0.0)
    return None if last is None else max(last * 1.5, last + 1.0)


def _instants_table(arrivals: list[float], rst: float | None,
                    sigs: list[tuple[str, list[tuple[float, float]], tuple[float, float] | None]]) -> str:
    n = max([len(arrivals)] + [len(s[1]) for s in sigs])
    if n == 0:
        return ""
    head = "".join(f'<th class="num" style="color:{LANE_COLOURS[i % len(LANE_COLOURS)]}">{_e(label)} (s)</th>'
                   for i, (label, _, _) in enumerate(sigs))
    rows = []
    for i in range(n):
        t = arrivals[i] if i < len(arrivals) else None
        gap = arrivals[i] - arrivals[i - 1] if t is not None and i > 0 else None
        cells = "".join(f'<td class="num">{_e(_range_text(s[1][i] if i < len(s[1]) else None))}</td>' for s in sigs)
        rows.append(f'<tr><td class="num">{i + 1}</td><td class="num">{_e(fmt_seconds(t) if t is not None else "—")}'
                    f'</td><td class="num">{_e(fmt_seconds(gap) if gap is not None else "—")}</td>{cells}</tr>')
    if rst is not None or any(s[2] for s in sigs):
        cells = "".join(f'<td class="num">{_e(_range_text(s[2]))}</td>' for s in sigs)
        rows.append(f'<tr><td class="num">RST</td><td class="num">{_e(fmt_seconds(rst) if rst is not None else "—")}'
                    f'</td><td class="num">—</td>{cells}</tr>')
    return (f'<table class="instants"><thead><tr><th class="num">#</th><th class="num">measured (s)</th>'
            f'<th class="num">gap (s)</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


# ---------------------------------------------------------------------------------------------- sequences


def _values(block: object) -> list[float]:
    if not isinstance(block, dict):
        return []
    vals = [_num(v) for v in block.get("values") or []] if isinstance(block.get("values"), list) else []
    return [v for v in vals if v is not None]


def _times(block: dict, n: int) -> list[float] | None:
    ts = block.get("times")
    if not isinstance(ts, list) or len(ts) != n:
        return None
    nums = [_num(v) for v in ts]
    if any(v is None for v in nums):
        return None
    t0 = nums[0]
    return [v - t0 for v in nums]  # type: ignore[operator]


def sequence_section(h: HostResult) -> str:
    seq = h.sequence if isinstance(h.sequence, dict) else {}
    if not seq:
        return ""
    figs: list[str] = []
    facts: list[tuple[str, str]] = []
    isn, ipid, ts = (_dict(seq.get(k)) for k in ("isn", "ip_id", "tcp_ts"))
    if isn:
        bits = [f"{k.upper()} {isn[k]}" for k in ("gcd", "isr", "sp") if k in isn]
        if _num(isn.get("rate_per_s")) is not None:
            bits.append(f"rate {fmt_num(float(isn['rate_per_s']))} per second")
        facts.append(("TCP ISN", " · ".join(bits) or "—"))
    if ipid:
        cls = ipid.get("class")
        facts.append(("IP ID", f"{cls} ({IP_ID_CLASSES.get(str(cls), 'unclassified')})" if cls else "—"))
    if ts:
        bits = []
        if _num(ts.get("hz")) is not None:
            bits.append(f"{float(ts['hz']):g} Hz")
        if ts.get("clock"):
            bits.append(str(ts["clock"]))
        if ts.get("uptime_s") is not None:
            bits.append(f"uptime ≈ {_uptime(ts['uptime_s'])}")
        facts.append(("TCP timestamps", " · ".join(bits) or "—"))
    for key, block, label, colour in (("isn", isn, "initial sequence number", LANE_COLOURS[0]),
                                      ("ip_id", ipid, "IP ID", LANE_COLOURS[1]),
                                      ("tcp_ts", ts, "TCP timestamp value", LANE_COLOURS[2])):
        vals = _values(block)
        if len(vals) < 2:
            continue
        times = _times(block, len(vals))
        chart = line_chart_svg(vals, x_values=times, x_label="seconds since first probe" if times else "probe",
                               y_label=label, colour=colour, title=f"{label} sequence")
        figs.append(f'<figure class="sequence" data-series="{key}">{chart}<figcaption>{_e(label)} of '
                    f'{len(vals)} replies</figcaption></figure>')
    if not figs and not facts:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    out = ["<h3>Sequence generation</h3>"]
    if rows:
        out.append(f'<table class="facts-table" style="width:auto"><tbody>{rows}</tbody></table>')
    if figs:
        out.append(f'<div class="seqgrid">{"".join(figs)}</div>')
    else:
        out.append('<p class="muted">Per-reply values were not recorded for this run.</p>')
    return "".join(out)


def _uptime(seconds: object) -> str:
    s = _num(seconds)
    if s is None:
        return str(seconds)
    d, rem = divmod(int(s), 86400)
    return f"{d} d {rem // 3600} h" if d else f"{rem // 3600} h {rem % 3600 // 60} min"


# ---------------------------------------------------------------------------------------------- host parts


def _best_os_cell(h: HostResult) -> str:
    name, conf = best_os(h)
    if name is None:
        return '<span class="muted">—</span>'
    return f"{_e(name)} {_conf_pct(conf)}"


def _evidence(ev: list[Evidence]) -> str:
    if not ev:
        return '<span class="muted">—</span>'
    items = [f'<li><span class="method">{_e(e.method)}</span>{_e(e.detail)}</li>' for e in ev]
    return f'<ul class="evidence">{"".join(items)}</ul>'


def _reasons(reasons: list[str]) -> str:
    if not reasons:
        return ""
    return '<ul class="evidence muted">' + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>"


def verdict_section(h: HostResult) -> str:
    matches = ns.os_matches(h)
    arch = h.os.architecture
    out = []
    if matches:
        rows = []
        for i, m in enumerate(matches):
            cls = ' class="verdict-best"' if i == 0 else ""
            kind = " / ".join(x for x in (m.vendor, m.family, m.generation) if x)
            cpe = "".join(f'<div class="mono muted">{_e(c)}</div>' for c in m.cpe[:3])
            rows.append(f"<tr{cls}><td class=\"num\">{i + 1}</td><td><b>{_e(m.name)}</b>{cpe}</td>"
                        f"<td>{_e(kind) or '—'}</td><td>{_e(m.device_type or '—')}</td>"
                        f"<td>{_confidence(m.confidence)}</td><td>{_evidence(m.evidence)}</td></tr>")
        out.append('<h3>Host verdict</h3><table class="verdict"><thead><tr><th class="num">#</th><th>OS / device'
                   '</th><th>vendor / family / generation</th><th>type</th><th>confidence</th><th>evidence</th>'
                   f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if arch:
        arows = "".join(f'<tr><td><span class="badge arch">{_e(a.kind)}</span></td>'
                        f'<td>{_e(a.detail)}{_reasons(a.reasons)}</td></tr>' for a in arch)
        out.append('<h3>Network architecture</h3><table class="architecture"><thead><tr><th style="width:160px">'
                   f'finding</th><th>detail</th></tr></thead><tbody>{arows}</tbody></table>')
    unknown = ns.unknown_stack_line(h)
    if unknown:
        out.append(f"<p><b>{_e(unknown)}</b></p>")
        if h.os.unknown is not None and h.os.unknown.evidence:
            out.append(_evidence(h.os.unknown.evidence))
    summary = h.os.stack.summary if h.os.stack is not None else {}
    if summary:
        srows = "".join(f'<tr><td>{_e(k.replace("_", " "))}</td><td class="mono">'
                       f'{_e(", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else ", ".join(map(str, v)) if isinstance(v, list) else v)}'
                       f"</td></tr>" for k, v in summary.items())
        out.append(f'<details><summary>Stack attributes</summary><table class="summary"><tbody>{srows}</tbody></table></details>')
    fp = h.os.fingerprint
    if fp and fp.strip():
        out.append(f"<details><summary>Stack fingerprint</summary><pre>{_e(fp)}</pre></details>")
    return "".join(out)


def ports_section(run: ScanRun, h: HostResult) -> str:
    out = []
    for e in h.extraports:
        out.append(f'<p class="muted">Not shown: {_e(ns.extraports_line(run, h, e))}</p>')
    if not h.ports:
        return "".join(out) or '<p class="muted">No ports were scanned or listed for this host.</p>'
    rows = []
    for p in h.ports:
        svc = p.service
        reason = p.reason + (f" (ttl {p.reason_ttl})" if p.reason_ttl is not None else "")
        det = ""
        if svc is not None:
            conf = _num(svc.confidence)
            det = f"{svc.method}" + (f", {conf * 100:.0f}%" if conf is not None else "")
        rows.append(f'<tr><td class="mono">{p.port}/{_e(p.protocol)}</td><td>{_state_badge(p.state)}</td>'
                    f"<td>{_e(reason)}</td><td>{_e(ns.service_name(svc) if svc else '')}</td>"
                    f"<td>{_e(ns.service_version(svc))}</td><td class=\"muted\">{_e(det)}</td></tr>")
        scripts = service_scripts(svc)
        if scripts:  # TLS/SSH facts and version ranges, as nmap's script results read
            body = "".join(f"<details><summary>{_e(x.id)}</summary><pre>{_e(x.output.strip(chr(10)))}</pre></details>"
                           for x in scripts)
            rows.append(f'<tr class="scripts"><td></td><td colspan="5">{body}</td></tr>')
    out.insert(0, '<table class="ports"><thead><tr><th>port</th><th>state</th><th>reason</th><th>service</th>'
                  f'<th>version</th><th>detected by</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return "".join(out)


def host_section(run: ScanRun, h: HostResult, source: SignatureSource) -> str:
    facts = [f"<span>{_state_badge(h.status)} {_e(', '.join(h.reasons))}</span>"]
    if h.hostname:
        facts.append(f"<span>{_e(h.hostname)}</span>")
    if h.mac:
        facts.append(f'<span class="mono">MAC {_e(h.mac)}</span>')
    if h.distance is not None:
        facts.append(f"<span>{_e(ns.plural(h.distance, 'hop'))}</span>")
    if h.rtt_us is not None and _num(h.rtt_us) is not None:
        facts.append(f"<span>RTT {_e(ns.seconds_sig2(h.rtt_us / 1e6))} s</span>")
    return (f'<section class="panel host" id="{_anchor(h.address)}"><div class="hosthead"><h2>{_e(h.address)}</h2>'
            f'</div><div class="facts">{"".join(facts)}</div>'
            f"<h3>Ports</h3>{ports_section(run, h)}{verdict_section(h)}{timing_section(h, source)}"
            f"{sequence_section(h)}</section>")


def overview_table(run: ScanRun) -> str:
    rows = []
    for h in run.hosts:
        open_ports = [p for p in h.ports if p.state == OPEN]
        svcs = ", ".join(f"{p.port}/{ns.service_name(p.service)}" if p.service else f"{p.port}/{p.protocol}"
                         for p in open_ports[:8]) + (" …" if len(open_ports) > 8 else "")
        arch = " ".join(f'<span class="badge arch">{_e(a.kind)}</span>' for a in h.os.architecture)
        addr = (f'<a href="#{_anchor(h.address)}">{_e(h.address)}</a>' if h.status == "up" else _e(h.address))
        rows.append(f'<tr><td class="mono">{addr}</td><td>{_e(h.hostname or "")}</td><td>{_state_badge(h.status)}</td>'
                    f'<td class="num">{len(open_ports)}</td><td>{_e(svcs)}</td><td>{_best_os_cell(h)}</td>'
                    f"<td>{arch}</td></tr>")
    if not rows:
        return '<p class="muted">This run recorded no hosts.</p>'
    return ('<table class="overview"><thead><tr><th>address</th><th>hostname</th><th>status</th>'
            '<th class="num">open</th><th>services</th><th>OS verdict</th><th>architecture</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


# ---------------------------------------------------------------------------------------------- diff


def diff_section(d: RunDiff) -> str:
    c = d.counts()
    labels = [("hosts_appeared", "host appeared", "hosts appeared", "k-appeared"),
              ("hosts_went_away", "host went away", "hosts went away", "k-went-away"),
              ("ports_opened", "port opened", "ports opened", "k-opened"),
              ("ports_closed", "port closed", "ports closed", "k-closed"),
              ("ports_changed", "other port change", "other port changes", "k-changed"),
              ("services_changed", "service changed", "services changed", "k-changed"),
              ("fingerprints_changed", "fingerprint changed", "fingerprints changed", "k-changed"),
              ("os_changed", "OS verdict changed", "OS verdicts changed", "k-changed")]
    badges = "".join(f'<span class="badge {cls if c[k] else "zero"}">{c[k]} {_e(one if c[k] == 1 else many)}</span>'
                     for k, one, many, cls in labels)
    out = [f'<section class="panel diff" id="changes"><h2>Changes since run <code>{_e(d.a.get("id"))}</code></h2>'
           f'<p class="muted">Reference run started {_e(_when(d.a.get("started")))}; this run started '
           f'{_e(_when(d.b.get("started")))}.</p><div class="diffsum">{badges}</div>']
    if d.empty:
        out.append("<p>No changes: same hosts, port states, services, fingerprints and OS verdicts.</p></section>")
        return "".join(out)
    hosts = [("appeared", "k-appeared", x) for x in d.appeared] + [("went away", "k-went-away", x) for x in d.went_away]
    out.append(_table("Hosts", "diff-hosts",
                      ["address", "change", "status in the other run", "open ports", "OS verdict"],
                      [[_e(x.address), f'<span class="badge {cls}">{_e(k)}</span>', _e(x.status_other),
                        _e(", ".join(x.open_ports) or "—"), _e(x.os or "—")] for k, cls, x in hosts]))
    out.append(_table("Ports", "diff-ports", ["address", "port", "change", "before", "after"],
                      [[_e(p.address), f"{p.port}/{_e(p.protocol)}", f'<span class="badge k-{_e(p.kind)}">{_e(p.kind)}'
                        "</span>", _e(p.before), _e(p.after)] for p in d.ports]))
    out.append(_table("Services", "diff-services", ["address", "port", "before", "after"],
                      [[_e(s.address), f"{s.port}/{_e(s.protocol)}", _e(s.before or "—"), _e(s.after or "—")]
                       for s in d.services]))
    out.append(_table("Fingerprints", "diff-fingerprints", ["address", "port", "what", "before", "after"],
                      [[_e(f.address), f"{f.port}/{_e(f.protocol)}", _e(f.what), _e(f.before), _e(f.after)]
                       for f in d.fingerprints]))
    out.append(_table("OS verdicts", "diff-os", ["address", "before", "after"],
                      [[_e(o.address), f"{_e(o.before or 'no verdict')} {_conf_pct(o.before_confidence)}",
                        f"{_e(o.after or 'no verdict')} {_conf_pct(o.after_confidence)}"] for o in d.os]))
    out.append("</section>")
    return "".join(out)


def _table(title: str, cls: str, headers: list[str], rows: list[list[str]]) -> str:
    """A titled table from cells that are already HTML; nothing at all when there are no rows.
    The first two columns (address, port) are set in the monospace face."""
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="mono">{c}</td>' if i < 2 and headers[i] in ("address", "port")
                                    else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<h3>{_e(title)}</h3><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _conf_pct(c: float | None) -> str:
    return f'<span class="muted">{c * 100:.0f}%</span>' if c is not None and c <= 1 else ""


# ---------------------------------------------------------------------------------------------- page


def render_report(run: ScanRun, *, diff: RunDiff | None = None, timing_db: str | None = None) -> str:
    """The whole page as one string (UTF-8 when written)."""
    source = SignatureSource(timing_db)
    up, _down, total = ns.host_counts(run)
    open_ports = sum(ns.open_port_count(h) for h in run.hosts)
    verdicts = sum(1 for h in run.hosts if best_os(h)[0] is not None)
    duration = f"{ns.elapsed(run):.1f} s" if run.finished is not None else "unfinished"
    cards = [(f"{up}/{total}", "hosts up"), (str(open_ports), "open ports"), (str(verdicts), "OS verdicts"),
             (duration, "duration")]
    card_html = "".join(f'<div class="card"><div class="n">{_e(n)}</div><div class="l">{_e(lbl)}</div></div>'
                        for n, lbl in cards)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Belt and braces: even if a future edit adds a reference, the browser may not fetch it.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>hostprint report — run {_e(run.id)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header class="page"><div class="inner"><h1>hostprint report</h1><div class="meta">run <code>{_e(run.id)}'
        f"</code> · started {_e(_when(run.started))} · <code>{_e(ns.command_line(run))}</code></div></div></header>",
        f'<main><div class="cards">{card_html}</div>',
    ]
    if diff is not None:
        parts.append(diff_section(diff))
    parts.append(f'<section class="panel"><h2>Hosts</h2>{overview_table(run)}</section>')
    for h in run.hosts:
        if h.status == "up":
            parts.append(host_section(run, h, source))
    parts.append(f"<footer>Generated by hostprint {_e(__version__)} on {_e(_when(time.time()))} from the "
                 "inventory. This file is self-contained: it loads nothing from the network.</footer>")
    parts.append("</main></body></html>\n")
    return "".join(parts)

