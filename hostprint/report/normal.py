"""nmap -oN ("normal") output: the plain-text report people paste into tickets and diff between runs.

Wording and column layout follow nmap 7.93's -oN output (checked on loopback) with "Nmap" replaced by
"hostprint", so eyes and scripts trained on nmap reports read it without surprises.
"""

from __future__ import annotations

from hostprint.model import HostResult, ScanRun
from hostprint.report import nmapstyle as ns

# At or above this confidence a match is reported as "OS details", below as guesses with their
# percentages (nmap draws the same line between a perfect match and aggressive guesses).
OS_DETAILS_CONFIDENCE = 0.95


def _table(rows: list[list[str]]) -> list[str]:
    """Columns as wide as their widest cell, one space apart, no trailing spaces (nmap's layout)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _not_shown(run: ScanRun, h: HostResult) -> str:
    return "Not shown: " + ", ".join(ns.extraports_line(run, h, e) for e in h.extraports)


def _os_lines(h: HostResult) -> list[str]:
    matches = ns.os_matches(h)
    lines: list[str] = []
    if matches:
        types = _unique(m.device_type for m in matches)
        if types:
            lines.append("Device type: " + "|".join(types))
        running = _unique(" ".join(x for x in (m.vendor or m.family, m.generation) if x) for m in matches)
        # "Linux" adds nothing next to "Linux 5.X"
        running = [r for r in running if not any(o != r and o.startswith(r + " ") for o in running)]
        if running:
            lines.append("Running: " + ", ".join(running))
        cpes = _unique(c for m in matches for c in m.cpe)
        if cpes:
            lines.append("OS CPE: " + " ".join(cpes))
        best = matches[0]
        if best.confidence >= OS_DETAILS_CONFIDENCE:
            lines.append("OS details: " + ", ".join(m.name for m in matches
                                                    if ns.accuracy_percent(m) == ns.accuracy_percent(best)))
        else:
            lines.append("Aggressive OS guesses: " + ", ".join(f"{m.name} ({ns.accuracy_percent(m)}%)"
                                                               for m in matches[:10]))
    unknown = ns.unknown_stack_line(h)
    if unknown:
        lines.append(unknown)
    fp = h.os.fingerprint
    if fp:
        lines.append("TCP/IP fingerprint:")
        lines.extend(fp.rstrip("\n").splitlines())
    return lines


def _unique(items) -> list[str]:
    seen: list[str] = []
    for i in items:
        if i and i not in seen:
            seen.append(i)
    return seen


def _service_info(h: HostResult) -> str:
    """'Service Info: Host: x; OS: Linux; CPE: cpe:/o:...' from what services said about the host."""
    hosts = _unique(p.service.hostname for p in h.ports if p.service)
    oses = _unique(p.service.ostype for p in h.ports if p.service)
    devs = _unique(p.service.devicetype for p in h.ports if p.service)
    cpes = _unique(c for p in h.ports if p.service for c in p.service.cpe if c.startswith(("cpe:/o", "cpe:/h")))
    parts = []
    for label, vals in (("Host", hosts), ("OS", oses), ("Device", devs), ("CPE", cpes)):
        if vals:
            parts.append(f"{label}{'s' if len(vals) > 1 else ''}: {', '.join(vals)}")
    return "Service Info: " + "; ".join(parts) if parts else ""


def _host_block(run: ScanRun, h: HostResult, with_version: bool) -> list[str]:
    name = f"{h.hostname} ({h.address})" if h.hostname else h.address
    if h.status != "up":
        return [f"hostprint scan report for {name} [host down]"]
    lines = [f"hostprint scan report for {name}"]
    if h.rtt_us is not None:
        lines.append(f"Host is up ({ns.seconds_sig2(h.rtt_us / 1e6)}s latency).")
    else:
        lines.append("Host is up.")
    if h.extraports and not h.ports:
        total = sum(e.count for e in h.extraports)
        lines.append(f"All {total} scanned ports on {name} are in ignored states.")
    if h.extraports:
        lines.append(_not_shown(run, h))
    if h.ports:
        header = ["PORT", "STATE", "SERVICE"] + (["VERSION"] if with_version else [])
        rows = [header]
        for p in h.ports:
            row = [f"{p.port}/{p.protocol}", p.state, ns.service_name(p.service)]
            if with_version:
                row.append(ns.service_version(p.service))
            rows.append(row)
        lines.extend(_table(rows))
    if h.mac:
        lines.append(f"MAC Address: {h.mac.upper()} (Unknown)")
    lines.extend(_os_lines(h))
    if h.distance is not None:
        lines.append(f"Network Distance: {ns.plural(h.distance, 'hop')}")
    info = _service_info(h)
    if info:
        lines.append(info)
    return lines


def format_normal(run: ScanRun, *, file_comments: bool = True) -> str:
    """The report text. With file_comments (the -oN file) it opens and closes with nmap's '#' lines
    ('# hostprint done at DATE -- ...'); without, it ends as nmap's terminal output does
    ('hostprint done: N IP addresses (M hosts up) scanned in S seconds')."""
    with_version = ns.has_version_info(run)
    lines = []
    if file_comments:
        lines.append(f"# {ns.scanner_banner()} scan initiated {ns.ctime(run.started)} as: {ns.command_line(run)}")
    stopped = ns.interruption(run)
    incomplete = set(stopped.get("incomplete") or []) if stopped else set()
    for h in run.hosts:
        block = _host_block(run, h, with_version)
        if h.address in incomplete:
            block.insert(1, "Incomplete: the run was interrupted before this host was finished.")
        lines.extend(block)
        lines.append("")
    if stopped:
        phase = f" during {stopped.get('phase')}" if stopped.get("phase") else ""
        lines.append(f"# hostprint interrupted by {stopped.get('by')}{phase} at {ns.ctime(ns.finished_at(run))} -- "
                     f"{ns.done_summary(run)}; {len(incomplete)} host(s) incomplete")
    elif file_comments:
        lines.append(f"# hostprint done at {ns.ctime(ns.finished_at(run))} -- {ns.done_summary(run)}")
    else:
        lines.append(f"hostprint done: {ns.done_summary(run)}")
    return "\n".join(lines) + "\n"
