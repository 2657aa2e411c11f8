"""nmap -oN ("normal") output: the plain-text report people paste into tickets, grep and diff
between runs. It is also what `hostprint scan` prints when stdout is not a terminal.

Wording and column layout follow nmap 7.93's -oN output (checked on loopback), so eyes and scripts
trained on nmap reports read it without surprises. Deliberate differences, all of them in the
lines that frame a report, never in a host's block:

* Each host starts with nmap's own words, "Nmap scan report for NAME (ADDRESS)": that line is what
  people grep for and what scripts split nmap reports on. The first and last lines name the tool
  that wrote the report: "# hostprint 0.1.0 scan initiated ...", "# hostprint done at ..." (a file)
  or "hostprint done: ..." (the terminal).
* Lines nmap has no equivalent for are added where nmap would put the nearest thing: per-DB OS
  matches (--os-db), the TCP timestamp clock (--sequence), host warnings ("Warning: ..."),
  timing-fingerprint lines.
* -sV's TLS and SSH facts and inferred version ranges appear under their port as nmap prints NSE
  script results ("| ssl-cert: …", "| ssh-hostkey: …", report/scripts.py), without --script.

nmap's rules kept: down hosts only with -v ("[host down]"); a REASON column with --reason; a
port-table service name with "?" when -sV could not confirm it; an SF fingerprint block for
services -sV could not identify; the OS evidence's DB line and point counts only with -v.
"""

from __future__ import annotations

from collections.abc import Iterable

from hostprint.model import HostResult, ScanRun
from hostprint.report import nmapstyle as ns
from hostprint.report.scripts import normal_lines, service_scripts

# At or above this confidence a match is reported as "OS details", below as guesses with their
# percentages (nmap draws the same line between a perfect match and aggressive guesses).
OS_DETAILS_CONFIDENCE = 0.95

REPORT_FOR = "Nmap scan report for"


def _table(rows: list[list[str]]) -> list[str]:
    """Columns as wide as their widest cell, one space apart, no trailing spaces (nmap's layout)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _not_shown(run: ScanRun, h: HostResult) -> str:
    return "Not shown: " + ", ".join(ns.extraports_line(run, h, e) for e in h.extraports)


def _os_lines(h: HostResult, verbose: int) -> list[str]:
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
        for e in ns.evidence_lines(best, verbose):  # which technique says so (DB lines and points: -v)
            lines.append(f"OS evidence: {e}")
    unknown = ns.unknown_stack_line(h)
    if unknown:
        lines.append(unknown)
    per_db = ns.os_db_lines(h)
    if per_db:
        lines.extend(per_db)
    for a in h.os.architecture:
        lines.append(f"Architecture: {a.kind}: {a.detail}")
    conditions = h.os.stack.conditions if h.os.stack else []
    if conditions:
        lines.append("OS detection conditions not ideal: " + "; ".join(conditions))
    timing = h.os.timing
    if timing is not None and timing.lines:
        lines.extend(ns.drop_zero_alternatives(ln) for ln in timing.lines)
    fp = h.os.fingerprint
    if fp and (verbose or not matches):
        lines.append("TCP/IP fingerprint:")
        lines.extend(fp.rstrip("\n").splitlines())
    return lines


def _unique(items: Iterable[str | None]) -> list[str]:
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


def _fingerprints(h: HostResult) -> list[str]:
    """nmap's block for services that answered but were not identified."""
    fps = [p.service.fingerprint for p in h.ports if p.service is not None and getattr(p.service, "fingerprint", None)]
    if not fps:
        return []
    n = len(fps)
    out = [f"{n} service{'s' if n > 1 else ''} unrecognized despite returning data. If you know the service/version, "
           "add a rule (hostprint amap -b prints a ready-made one) for the following fingerprint"
           f"{'s' if n > 1 else ''}:"]
    for fp in fps:
        if n > 1:
            out.append("==============NEXT SERVICE FINGERPRINT (SUBMIT INDIVIDUALLY)==============")
        out.extend(str(fp).splitlines())
    return out


def _sequence_lines(h: HostResult) -> list[str]:
    seq = h.sequence if isinstance(h.sequence, dict) else {}
    out = []
    tcp = seq.get("tcpsequence")
    if isinstance(tcp, dict) and tcp.get("index") is not None:
        out.append(f"TCP Sequence Prediction: Difficulty={tcp['index']} ({tcp.get('difficulty')})")
    ipid = seq.get("ipidsequence")
    if isinstance(ipid, dict) and ipid.get("class"):
        out.append(f"IP ID Sequence Generation: {ipid['class']}")
    ts = seq.get("tcp_ts")
    if isinstance(ts, dict) and ts.get("clock"):
        words = f"TCP timestamps: {ts['clock']}"
        if ts.get("hz"):
            words += f", {ts['hz']:g} Hz"
        if ts.get("uptime_s") is not None:
            words += f", uptime {ns.uptime_words(float(ts['uptime_s']))}"
        out.append(words)
    if not out and seq.get("responses") is not None:
        out.append(f"TCP Sequence Prediction: too few answers ({seq['responses']} SYN-ACKs)")
    return out


def _trace_lines(h: HostResult) -> list[str]:
    if not h.trace:
        return []
    how = h.trace[0].get("probe") if isinstance(h.trace[0], dict) else None
    rows = [["HOP", "RTT", "ADDRESS"]]
    for hop in h.trace:
        rtt = hop.get("rtt_us")
        addr = hop.get("address")
        name = hop.get("hostname") or (h.hostname if addr == h.address else None)
        rows.append([str(hop.get("ttl", "")), f"{rtt / 1000:.2f} ms" if isinstance(rtt, (int, float)) else "...",
                     (f"{name} ({addr})" if name else str(addr)) if addr else "..."])
    return ["", f"TRACEROUTE{f' (using {how})' if how else ''}"] + _table(rows)


def host_name(h: HostResult) -> str:
    return f"{h.hostname} ({h.address})" if h.hostname else h.address


def host_block(run: ScanRun, h: HostResult, *, with_version: bool | None = None, verbose: int | None = None,
               reason: bool | None = None) -> list[str]:
    """One host as nmap's normal output writes it (without the blank line after it)."""
    verbose = ns.run_verbose(run) if verbose is None else verbose
    reason = ns.run_reason(run) if reason is None else reason
    with_version = ns.has_version_info(run) if with_version is None else with_version
    name = host_name(h)
    if h.status != "up":
        if h.status == "unknown":  # -sL: listed, never probed
            return [f"{REPORT_FOR} {name}"]
        return [f"{REPORT_FOR} {name} [host down" + (f", received {ns.reason_words(h)}]" if reason and h.reasons
                                                       and h.reasons != ["no-response"] else "]")]
    lines = [f"{REPORT_FOR} {name}"]
    received = f", received {ns.reason_words(h)}" if reason and h.reasons else ""
    if h.rtt_us is not None:
        lines.append(f"Host is up{received} ({ns.seconds_sig2(h.rtt_us / 1e6)}s latency).")
    else:
        lines.append(f"Host is up{received}.")
    ptr = [n["name"] for n in h.hostnames if n.get("type") == "PTR"]
    if ptr and ptr[0] != h.hostname:
        lines.append(f"rDNS record for {h.address}: {ptr[0]}")
    for other in h.addresses:  # --dual-stack
        opened = ", ".join(other.get("open") or []) or "none"
        lines.append(f"Same host at {other.get('address')} ({'; '.join(other.get('paired_by') or [])}); "
                     f"open there: {opened}")
    if h.extraports and not h.ports:
        total = sum(e.count for e in h.extraports)
        lines.append(f"All {total} scanned ports on {name} are in ignored states.")
    if h.extraports:
        lines.append(_not_shown(run, h))
    ports = [p for p in h.ports if p.protocol != "ip"]
    if ports:
        header = ["PORT", "STATE", "SERVICE"] + (["REASON"] if reason else []) + (["VERSION"] if with_version else [])
        rows = [header]
        guessed = ns.run_service_scan(run)
        for p in ports:
            row = [f"{p.port}/{p.protocol}", p.state, ns.service_name(p.service, guessed=guessed, state=p.state)]
            if reason:
                row.append(ns.port_reason(p))
            if with_version:
                row.append(ns.service_version(p.service))
            rows.append(row)
        table = _table(rows)
        lines.append(table[0])
        for p, row_text in zip(ports, table[1:]):
            lines.append(row_text)
            for x in service_scripts(p.service, pem=verbose >= 2, full=verbose >= 1):
                lines.extend(normal_lines(x))
    protocols = [p for p in h.ports if p.protocol == "ip"]  # -sO: nmap's PROTOCOL table
    if protocols:
        rows = [["PROTOCOL", "STATE", "SERVICE"] + (["REASON"] if reason else [])]
        rows += [[str(p.port), p.state, ns.service_name(p.service)] + ([ns.port_reason(p)] if reason else [])
                 for p in protocols]
        lines.extend(_table(rows))
    lines.extend(_fingerprints(h))
    if h.mac:
        lines.append(f"MAC Address: {h.mac.upper()} (Unknown)")
    lines.extend(f"Warning: {w}" for w in h.warnings)
    lines.extend(_os_lines(h, verbose))
    if h.distance is not None:
        lines.append(f"Network Distance: {ns.plural(h.distance, 'hop')}")
    lines.extend(_sequence_lines(h))
    info = _service_info(h)
    if info:
        lines.append(info)
    lines.extend(_trace_lines(h))
    return lines


def shown_hosts(run: ScanRun, verbose: int | None = None) -> list[HostResult]:
    """The hosts a report lists: down hosts only with -v (nmap's rule); -sL lists every target."""
    verbose = ns.run_verbose(run) if verbose is None else verbose
    return [h for h in run.hosts if h.status != "down" or verbose]


def format_normal(run: ScanRun, *, file_comments: bool = True, verbose: int | None = None,
                  reason: bool | None = None) -> str:
    """The report text. With file_comments (the -oN file) it opens and closes with nmap's '#' lines
    ('# hostprint done at DATE -- ...'); without, it ends as nmap's terminal output does
    ('hostprint done: N IP addresses (M hosts up) scanned in S seconds'). `verbose` and `reason`
    default to what the run was asked (run.stats: "verbose", "reason")."""
    with_version = ns.has_version_info(run)
    lines = []
    if file_comments:
        lines.append(f"# {ns.scanner_banner()} scan initiated {ns.ctime(run.started)} as: {ns.command_line(run)}")
    stopped = ns.interruption(run)
    incomplete = set(stopped.get("incomplete") or []) if stopped else set()
    for h in shown_hosts(run, verbose):
        block = host_block(run, h, with_version=with_version, verbose=verbose, reason=reason)
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
