"""Inline SVG charts for the HTML report: a timeline of packet instants and a small line chart.

Why hand-written SVG instead of a plotting library: the report must be one file that renders
with no network and no JavaScript, the charts are simple, and every string that reaches the page
(stack labels, banners) must be escaped here, in one place. Colours and sizes are chosen to read
on screen and on paper (no colour is the only carrier of meaning: markers differ in shape too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

FONT = "font-family:inherit"
AXIS = "#6b7280"
GRID = "#e5e7eb"
TEXT = "#111827"
MEASURED = "#1d4ed8"
RST = "#b91c1c"
LANE_COLOURS = ("#047857", "#b45309", "#7c3aed", "#0e7490")


def nice_ticks(lo: float, hi: float, target: int = 8) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def fmt_num(v: float) -> str:
    """Short tick label: 0.25, 12, 3.4k, 1.2M, 4.29G (ISNs and timestamps are large)."""
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div * 10 or (a >= div and suffix != "k"):
            return f"{v / div:.3g}{suffix}"
    if a >= 1000:
        return f"{v:.0f}"
    return f"{v:.4g}"


def fmt_seconds(v: float) -> str:
    """Seconds without exponents: '0.000038', '0.214', '15.25', '31.39'."""
    if v == 0:
        return "0"
    if abs(v) < 0.001:
        return f"{v:.6f}".rstrip("0")
    if abs(v) < 1:
        return f"{v:.3g}"
    return f"{v:.4g}"


@dataclass
class Lane:
    """One row of the timeline. `ranges` are (lo, hi) seconds; lo == hi draws a point."""

    label: str
    kind: str  # "measured" | "signature"
    ranges: list[tuple[float, float]] = field(default_factory=list)
    rst: tuple[float, float] | None = None
    note: str = ""  # shown after the label, e.g. "97 %"
    title: str = ""  # tooltip (full label and source)
    later: int = 0  # instants beyond the axis (not drawn)


def _clip(ln: Lane, until: float) -> Lane:
    keep = [(lo, min(hi, until)) for lo, hi in ln.ranges if lo <= until]
    later = len(ln.ranges) - len(keep)
    rst = ln.rst
    if rst is not None and rst[0] > until:
        rst, later = None, later + 1
    elif rst is not None:
        rst = (rst[0], min(rst[1], until))
    return Lane(ln.label, ln.kind, keep, rst, ln.note, ln.title, ln.later + later)


def _label(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timeline_svg(lanes: Sequence[Lane], *, width: int = 1060, caption: str = "", until: float | None = None) -> str:
    """Every lane's instants on one shared time axis (seconds since our probe).

    Measured packets are filled circles, a final RST a red diamond; signature instants are bars
    spanning the range the signature allows, so "inside the bar" reads as "fits". `until` ends
    the axis (the time we listened): signature instants after it could not have been seen, so
    they are counted at the lane's end instead of squeezing the measured part into a corner.
    """
    left, right, top, lane_h = 260, 24, 34, 40
    plot_w = width - left - right
    height = top + lane_h * len(lanes) + 46
    if until is not None and until > 0:
        lanes = [_clip(ln, until) for ln in lanes]
    xs = [x for ln in lanes for r in ln.ranges + ([ln.rst] if ln.rst else []) for x in r]
    hi = max(xs) if xs else 1.0
    hi = hi * 1.04 if hi > 0 else 1.0
    ticks = nice_ticks(0.0, hi)
    hi = max(hi, ticks[-1])

    def X(t: float) -> float:
        return left + plot_w * max(0.0, t) / hi

    out = [
        f'<svg class="plot timeline" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" style="{FONT}">',
    ]
    if caption:
        out.append(f"<title>{escape(caption)}</title>")
    # legend
    lx = left
    out.append(f'<circle cx="{lx + 6}" cy="14" r="5" fill="{MEASURED}"/>')
    out.append(f'<text x="{lx + 16}" y="18" font-size="12" fill="{TEXT}">measured packet</text>')
    lx += 130
    out.append(_diamond(lx + 6, 14, 6, RST))
    out.append(f'<text x="{lx + 16}" y="18" font-size="12" fill="{TEXT}">final RST</text>')
    lx += 95
    out.append(f'<rect x="{lx}" y="8" width="26" height="12" rx="3" fill="{LANE_COLOURS[0]}" fill-opacity="0.35" '
               f'stroke="{LANE_COLOURS[0]}"/>')
    out.append(f'<text x="{lx + 32}" y="18" font-size="12" fill="{TEXT}">signature range '
               f'(aligned at the first received packet)</text>')
    # grid and axis
    base = top + lane_h * len(lanes)
    for t in ticks:
        x = X(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{base}" stroke="{GRID}"/>')
        out.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 5}" stroke="{AXIS}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{base + 18}" font-size="12" fill="{AXIS}" '
                   f'text-anchor="middle">{escape(fmt_seconds(t))}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="{AXIS}"/>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{base + 38}" font-size="12" fill="{AXIS}" '
               f'text-anchor="middle">seconds since the probe</text>')
    # guides: measured instants across every lane, so alignment reads at a glance
    for ln in lanes:
        if ln.kind == "measured":
            for lo_, _ in ln.ranges:
                out.append(f'<line x1="{X(lo_):.1f}" y1="{top}" x2="{X(lo_):.1f}" y2="{base}" '
                           f'stroke="{MEASURED}" stroke-opacity="0.25" stroke-dasharray="3 3"/>')
    colour_i = 0
    for i, ln in enumerate(lanes):
        cy = top + lane_h * i + lane_h / 2
        if i % 2 == 0:
            out.append(f'<rect x="0" y="{top + lane_h * i}" width="{width}" height="{lane_h}" fill="#f9fafb" '
                       f'fill-opacity="0.7"/>')
        label = _label(ln.label)
        out.append(f'<g class="lane {ln.kind}" data-later="{ln.later}">')
        out.append(f'<text class="lane-label" x="{left - 12}" y="{cy - 2:.1f}" font-size="13" fill="{TEXT}" '
                   f'text-anchor="end" font-weight="600">{escape(label)}'
                   + (f"<title>{escape(ln.title or ln.label)}</title>" if ln.title or label != ln.label else "")
                   + "</text>")
        if ln.note:
            out.append(f'<text x="{left - 12}" y="{cy + 13:.1f}" font-size="11" fill="{AXIS}" '
                       f'text-anchor="end">{escape(ln.note)}</text>')
        if ln.kind == "measured":
            for lo_, _ in ln.ranges:
                out.append(f'<circle class="pkt" cx="{X(lo_):.1f}" cy="{cy:.1f}" r="5.5" fill="{MEASURED}">'
                           f"<title>{escape(fmt_seconds(lo_))} s</title></circle>")
            if ln.rst:
                out.append(_diamond(X(ln.rst[0]), cy, 7, RST, f"RST at {fmt_seconds(ln.rst[0])} s"))
        else:
            out.append(_signature_bars(ln, X, cy, LANE_COLOURS[colour_i % len(LANE_COLOURS)]))
            colour_i += 1
        if ln.later:
            out.append(f'<text class="later" x="{left + plot_w - 4}" y="{cy - 12:.1f}" font-size="11" fill="{AXIS}" '
                       f'text-anchor="end">+{ln.later} later →</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _signature_bars(ln: Lane, X: Callable[[float], float], cy: float, colour: str) -> str:
    out = []
    # Overlapping ranges (loose signatures) would merge into one bar: stagger them in two rows.
    overlap = any(b[0] < a[1] for a, b in zip(ln.ranges, ln.ranges[1:]))
    for j, (lo_, hi_) in enumerate(ln.ranges):
        x0, x1 = X(lo_), X(hi_)
        w = max(x1 - x0, 4.0)
        y, bh = (cy - 8, 16) if not overlap else ((cy - 10, 9) if j % 2 == 0 else (cy + 1, 9))
        out.append(f'<rect class="sig" x="{(x0 + x1 - w) / 2:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bh}" '
                   f'rx="3" fill="{colour}" fill-opacity="0.35" stroke="{colour}">'
                   f"<title>{escape(fmt_seconds(lo_))}–{escape(fmt_seconds(hi_))} s</title></rect>")
    if ln.rst:
        x0, x1 = X(ln.rst[0]), X(ln.rst[1])
        w = max(x1 - x0, 4.0)
        out.append(f'<rect class="sig-rst" x="{(x0 + x1 - w) / 2:.1f}" y="{cy - 8:.1f}" width="{w:.1f}" '
                   f'height="16" rx="3" fill="{RST}" fill-opacity="0.2" stroke="{RST}" stroke-dasharray="3 2">'
                   f"<title>RST {escape(fmt_seconds(ln.rst[0]))}–{escape(fmt_seconds(ln.rst[1]))} s</title></rect>")
    return "".join(out)


def _diamond(x: float, y: float, r: float, colour: str, title: str = "") -> str:
    pts = f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"
    t = f"<title>{escape(title)}</title>" if title else ""
    return f'<polygon class="rst" points="{pts}" fill="{colour}">{t}</polygon>'


def line_chart_svg(values: Sequence[float], *, x_values: Sequence[float] | None = None, x_label: str = "probe",
                   y_label: str = "", width: int = 340, height: int = 220, colour: str = MEASURED,
                   title: str = "") -> str:
    """A small line chart with markers (sequence numbers against probe number or time).

    Values that barely move against their size (a 1 kHz timestamp clock at 312 million) are
    drawn as differences from the first value, or every tick label would read the same.
    """
    left, right, top, bottom = 64, 14, 14, 42
    pw, ph = width - left - right, height - top - bottom
    ys = [float(v) for v in values]
    raw = list(ys)
    offset_note = ""
    if ys and max(ys) - min(ys) < 0.01 * max(abs(max(ys)), abs(min(ys))):
        base = ys[0]
        ys = [y - base for y in ys]
        offset_note = f"minus {int(base) if float(base).is_integer() else base:,}"
    xs = [float(x) for x in x_values] if x_values is not None and len(x_values) == len(ys) else \
        [float(i + 1) for i in range(len(ys))]
    if not ys:
        return ""
    ylo, yhi = min(ys), max(ys)
    if yhi == ylo:
        pad = abs(yhi) * 0.05 or 1.0
        # counters (IP ID, ISN) are unsigned: a constant zero gets an axis from 0 up, not -1..1
        ylo, yhi = (ylo, yhi + pad) if ylo == 0 else (ylo - pad, yhi + pad)
    yt = nice_ticks(ylo, yhi, 5)
    ylo, yhi = min(ylo, yt[0]), max(yhi, yt[-1])
    xlo, xhi = min(xs), max(xs)
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    xt = nice_ticks(xlo, xhi, 6)
    if x_values is None:
        xt = [t for t in xt if float(t).is_integer()]

    def X(v: float) -> float:
        return left + pw * (v - xlo) / (xhi - xlo)

    def Y(v: float) -> float:
        return top + ph * (1 - (v - ylo) / (yhi - ylo))

    out = [f'<svg class="plot seq" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'style="{FONT}">']
    if title:
        out.append(f"<title>{escape(title)}</title>")
    for t in yt:
        out.append(f'<line class="grid" x1="{left}" y1="{Y(t):.1f}" x2="{left + pw}" y2="{Y(t):.1f}" stroke="{GRID}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{Y(t) + 4:.1f}" font-size="11" fill="{AXIS}" '
                   f'text-anchor="end">{escape(fmt_num(t))}</text>')
    for t in xt:
        if xlo <= t <= xhi:
            out.append(f'<text class="tick" x="{X(t):.1f}" y="{top + ph + 16}" font-size="11" fill="{AXIS}" '
                       f'text-anchor="middle">{escape(fmt_num(t))}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{AXIS}"/>')
    out.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="{AXIS}"/>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{height - 6}" font-size="11" fill="{AXIS}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{top + ph / 2:.0f}" font-size="11" fill="{AXIS}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {top + ph / 2:.0f})">{escape(y_label)}</text>')
    if offset_note:
        out.append(f'<text class="offset" x="{left + 6}" y="{top + 10}" font-size="11" fill="{AXIS}">'
                   f"{escape(offset_note)}</text>")
    pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(xs, ys))
    out.append(f'<polyline class="series" points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for x, y, v in zip(xs, ys, raw):
        out.append(f'<circle class="pt" cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3.5" fill="{colour}">'
                   f"<title>{escape(fmt_num(x))}: {int(v) if float(v).is_integer() else v}</title></circle>")
    out.append("</svg>")
    return "".join(out)
