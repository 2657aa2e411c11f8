"""Wording and number formats shared by the nmap-compatible outputs (XML, grepable, normal).

The three formats must agree on every derived fact (which protocol an <extraports> block belongs
to, how a service version reads, how many hosts were up), so those decisions live here once.
"""

from __future__ import annotations

import math
import re
import shlex
import time
from collections.abc import Iterable
from typing import Any

from hostprint import __version__
from hostprint.model import OPEN, ExtraPorts, HostResult, OsMatch, PortResult, ScanRun, Service

# Reasons that only one transport can produce; used to tell which protocol an ExtraPorts block
# (which carries no protocol field) belongs to. Words are nmap's (reason.cc).
_TCP_REASONS = frozenset({"reset", "conn-refused", "syn-ack", "rst", "ack"})
_UDP_REASONS = frozenset({"port-unreach", "udp-response"})


def command_line(run: ScanRun) -> str:
    """The invocation as one shell-quoted string, always starting with the program name."""
    args = list(run.args)
    if not args or not args[0].rsplit("/", 1)[-1].startswith("hostprint"):
        args.insert(0, "hostprint")
    return shlex.join(args)


def ctime(ts: float) -> str:
    """nmap prints times with C's ctime(): 'Mon Nov  3 04:09:31 2026' in local time."""
    return time.ctime(ts)


def finished_at(run: ScanRun) -> float:
    """When the run ended; a run written before it is finished reports its last host's end."""
    if run.finished is not None:
        return run.finished
    ends = [h.finished for h in run.hosts if h.finished is not None]
    return max(ends) if ends else run.started


def elapsed(run: ScanRun) -> float:
    return max(0.0, finished_at(run) - run.started)


def host_counts(run: ScanRun) -> tuple[int, int, int]:
    """(up, down, total). `run.stats["hosts_total"]` counts targets that never made it into
    run.hosts (nmap leaves silent hosts out of its reports but still counts them)."""
    up = sum(1 for h in run.hosts if h.status == "up")
    total = len(run.hosts)
    stated = run.stats.get("hosts_total") if isinstance(run.stats, dict) else None
    if isinstance(stated, int) and stated > total:
        total = stated
    return up, total - up, total


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def done_summary(run: ScanRun) -> str:
    """'N IP addresses (M hosts up) scanned in S seconds', nmap's closing sentence."""
    up, _down, total = host_counts(run)
    return (
        f"{plural(total, 'IP address', 'IP addresses')} ({plural(up, 'host')} up) "
        f"scanned in {elapsed(run):.2f} seconds"
    )


def port_ranges(ports: Iterable[int]) -> str:
    """'1-3,7,9-10': nmap's compact port list (scaninfo services, grepable header)."""
    ps = sorted(set(ports))
    out: list[str] = []
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        out.append(str(ps[i]) if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return ",".join(out)


def seconds_sig2(seconds: float) -> str:
    """Two significant digits without exponent, as nmap prints latency ('0.00044', '0.000081')."""
    if seconds <= 0 or not math.isfinite(seconds):
        return "0"
    decimals = max(0, 1 - math.floor(math.log10(seconds)))
    return f"{seconds:.{decimals}f}"


def service_name(svc: Service | None, *, tunnel_sep: str = "/", guessed: bool = False, state: str = OPEN) -> str:
    """'ssl/http' in normal output, 'ssl|http' in grepable (where '/' is a field separator).
    With `guessed` (a run that did -sV) an open port's name that only the port table gave gets
    nmap's "?" ('abyss?'): -sV tried and could not confirm it."""
    if svc is None:
        return "unknown"
    name = svc.name or "unknown"
    if svc.tunnel:
        name = f"{svc.tunnel}{tunnel_sep}{name}"
    if guessed and svc.method == "port-table" and svc.name and state in (OPEN, "open|filtered"):
        name += "?"
    return name


# What the run was asked, as _finish records it in run.stats (reports written without a command,
# e.g. from tests or `history RUN`, get nmap's defaults).
def run_verbose(run: ScanRun) -> int:
    v = run.stats.get("verbose", 0) if isinstance(run.stats, dict) else 0
    return v if isinstance(v, int) else 0


def run_reason(run: ScanRun) -> bool:
    return bool(run.stats.get("reason")) if isinstance(run.stats, dict) else False


def run_service_scan(run: ScanRun) -> bool:
    return bool(run.stats.get("service_scan")) if isinstance(run.stats, dict) else False


def port_reason(p: PortResult) -> str:
    """nmap's REASON column: 'syn-ack ttl 64'."""
    return (p.reason or "unknown") + (f" ttl {p.reason_ttl}" if p.reason_ttl else "")


def reason_words(h: HostResult) -> str:
    """Why a host is up, nmap's 'received echo-reply ttl 64' (all methods that saw it, comma separated)."""
    return ", ".join(h.reasons) if h.reasons else "unknown"


_DB_DETAIL = re.compile(r"\S+(?: \S+)? line \d+: \d+/\d+ points(?:; )?")


def evidence_lines(match: OsMatch, verbose: int) -> list[str]:
    """'method: detail' for the strongest evidence of each method behind a match; the DB file,
    line and point counts only with -v."""
    out: list[str] = []
    seen: set[str] = set()
    for e in match.evidence:
        if e.method in seen:
            continue
        seen.add(e.method)
        detail = e.detail if verbose else _DB_DETAIL.sub("", e.detail).strip(" ;")
        out.append(f"{e.method}: {detail}" if detail else e.method)
    return out


def os_db_lines(host: HostResult) -> list[str]:
    """-O --os-db with more than our DB: each DB's best classes ('OS DB nmap: Linux 5.0 - 5.14 (96%)')."""
    st = host.os.stack
    if st is None or not st.matches:
        return []
    by: dict[str, list[OsMatch]] = {}
    for m in st.matches:
        by.setdefault(m.db or "hostprint", []).append(m)
    if list(by) == ["hostprint"]:
        return []
    out = []
    for db, ms in by.items():
        ms = [m for m in sorted(ms, key=lambda m: -m.confidence) if accuracy_percent(m) > 0][:3]
        if ms:
            out.append(f"OS DB {db}: " + ", ".join(f"{m.name} ({accuracy_percent(m)}%)" for m in ms))
    return out


_ZERO_ALT = re.compile(r",? [^,(]+ \(0%\)")


def drop_zero_alternatives(line: str) -> str:
    """'Remote OS guesses: A (96%), B (0%)' -> 'Remote OS guesses: A (96%)'."""
    return _ZERO_ALT.sub("", line) if "(0%)" in line else line


def uptime_words(seconds: float) -> str:
    d = seconds / 86400
    return f"{d:.1f} days" if d >= 1 else f"{seconds / 3600:.1f} hours"


def service_version(svc: Service | None) -> str:
    """'OpenSSH 9.2p1 Debian 2 (protocol 2.0)': product, version, extrainfo in parentheses."""
    if svc is None:
        return ""
    parts = [p for p in (svc.product, svc.version) if p]
    vr = svc.version_range
    if not svc.version and vr is not None and (vr.low or vr.high):  # a range from behaviour, as a range
        parts.append(vr.text)
    if svc.extrainfo:
        parts.append(f"({svc.extrainfo})")
    return " ".join(parts)


def has_version_info(run: ScanRun) -> bool:
    return any(
        p.service is not None and (p.service.product or p.service.version or p.service.extrainfo)
        for h in run.hosts
        for p in h.ports
    )


def extraports_protocol(run: ScanRun, host: HostResult, extra: ExtraPorts) -> str | None:
    """Which transport an ExtraPorts block counts.

    The model's ExtraPorts has no protocol, so: use one if a later model adds it; else the only
    protocol the run scanned; else the only protocol with enough unlisted scanned ports to hold
    the count; else the transport that its reasons can only come from.
    """
    proto = getattr(extra, "protocol", None)
    if isinstance(proto, str) and proto:
        return proto
    scanned = [p for p, ports in run.ports_scanned.items() if ports]
    if len(scanned) == 1:
        return scanned[0]
    # Only a protocol with at least `count` scanned-but-unlisted ports can hold the block.
    room = [
        p
        for p in scanned
        if len(set(run.ports_scanned[p])) - sum(1 for r in host.ports if r.protocol == p) >= extra.count
    ]
    if len(room) == 1:
        return room[0]
    reasons = set(extra.reasons)
    if reasons and reasons <= _TCP_REASONS:
        return "tcp"
    if reasons and reasons <= _UDP_REASONS:
        return "udp"
    protos = {p.protocol for p in host.ports}
    if len(protos) == 1:
        return protos.pop()
    return None


def extraports_line(run: ScanRun, host: HostResult, extra: ExtraPorts) -> str:
    """'65000 closed tcp ports (reset)', or '(900 no-response, 34 admin-prohibited)' when mixed."""
    proto = extraports_protocol(run, host, extra)
    what = f"{extra.state} {proto} ports" if proto else f"{extra.state} ports"
    if proto == "ip":  # -sO: nmap's words
        what = f"{extra.state} n/a protocols"
    ordered = sorted(extra.reasons.items(), key=lambda rc: -rc[1])
    reasons = ", ".join(r if len(ordered) == 1 else f"{c} {r}" for r, c in ordered)
    return f"{extra.count} {what}" + (f" ({reasons})" if reasons else "")


def open_port_count(host: HostResult) -> int:
    return sum(1 for p in host.ports if p.state == OPEN)


def os_matches(host: HostResult) -> list[OsMatch]:
    """The host's combined OS matches, best first; alternatives at 0 % are not listed."""
    ms = sorted(host.os.matches, key=lambda m: -m.confidence)
    return ms[:1] + [m for m in ms[1:] if accuracy_percent(m) > 0]


def unknown_stack_line(host: HostResult) -> str | None:
    """'No class fits' in words: the combined verdict's unknown (why, and the nearest class), else
    the stack probes' own (nearest class, how far, the first attributes that disagree)."""
    u = host.os.unknown
    st = host.os.stack
    if u is None and st is not None and st.unknown is not None:
        u = st.unknown
    if u is None or not (u.nearest or u.reason):
        return None
    dis = u.disagreements[:4]
    text = "OS: unknown"
    if u.reason:
        text += f" ({u.reason})"
    elif u.nearest:
        text += " stack"
    if u.nearest:
        text += f"; nearest class {u.nearest}"
        if u.distance is not None:
            text += f" at distance {u.distance:g}"
    if dis:
        text += f" (differs in {', '.join(dis)})"
    return text


def accuracy_percent(match: OsMatch) -> int:
    """Confidence 0..1 as nmap's integer accuracy percentage."""
    return max(0, min(100, round(match.confidence * 100)))


def scanner_banner() -> str:
    return f"hostprint {__version__}"


def interruption(run: ScanRun) -> dict[str, Any] | None:
    """run.stats['interrupted'] ({by, phase, incomplete}) of a run stopped early (report.RunOutputs
    writes it), for the writers' partial-file marks; None for a finished run."""
    info = run.stats.get("interrupted") if isinstance(run.stats, dict) else None
    return info if isinstance(info, dict) else None
