"""nmap -oG ("grepable") output: one line per host and fact, so `grep`/`awk`/`cut` pipelines and the
scripts people already run on nmap's .gnmap files work on hostprint's results.

Line shapes follow nmap 7.93's -oG output on loopback: a header comment, `Host: A (NAME)\tStatus: Up`,
then `Host: A (NAME)\tPorts: port/state/proto/owner/service/rpc/version/, ...\tIgnored State: s (n)`
and a trailer comment. Inside a port entry '/' separates fields and ', ' separates ports, so those
characters are replaced in service text (nmap uses '|' for '/' too: 'ssl|http').
"""

from __future__ import annotations

from hostprint.model import HostResult, PortResult, ScanRun
from hostprint.report import nmapstyle as ns

#: grepable's field separators and line breaks inside a value
_FIELD = str.maketrans({"/": "|", ",": ";", "\t": " ", "\r": " ", "\n": " "})


def _field(text: str) -> str:
    return text.translate(_FIELD)


def _port_entry(p: PortResult) -> str:
    svc = p.service
    name = _field(ns.service_name(svc, tunnel_sep="|")) if svc is not None and svc.name else ""
    version = _field(ns.service_version(svc))
    return f"{p.port}/{p.state}/{p.protocol}//{name}//{version}/"


def _host_lines(run: ScanRun, h: HostResult) -> list[str]:
    prefix = f"Host: {h.address} ({_field(h.hostname or '')})"
    if h.status == "unknown":  # -sL
        return [f"{prefix}\tStatus: Unknown"]
    if h.status != "up":
        return [f"{prefix}\tStatus: Down"]
    lines = [f"{prefix}\tStatus: Up"]
    fields: list[str] = []
    ports = [p for p in h.ports if p.protocol != "ip"]
    protocols = [p for p in h.ports if p.protocol == "ip"]  # -sO: nmap's "Protocols:" field
    ip_only = bool(h.extraports) and all(e.protocol == "ip" for e in h.extraports)
    if ports or (h.extraports and not protocols and not ip_only):
        fields.append("Ports: " + ", ".join(_port_entry(p) for p in ports))
    if protocols or (ip_only and not ports):
        fields.append("Protocols: " + ", ".join(f"{p.port}/{p.state}/{_field(p.service.name or '') if p.service else ''}/"
                                                for p in protocols))
    if h.extraports:
        # nmap names only its largest ignored state here; the others stay countable in XML/JSON.
        biggest = max(h.extraports, key=lambda e: e.count)
        fields.append(f"Ignored State: {biggest.state} ({biggest.count})")
    matches = ns.os_matches(h)
    if matches:
        fields.append("OS: " + _field(" or ".join(m.name for m in matches[:1])))
    if fields:
        lines.append(prefix + "\t" + "\t".join(fields))
    return lines


def format_grepable(run: ScanRun) -> str:
    lines = [f"# {ns.scanner_banner()} scan initiated {ns.ctime(run.started)} as: {ns.command_line(run)}"]
    from hostprint.report.normal import shown_hosts

    stopped = ns.interruption(run)
    incomplete = set(stopped.get("incomplete") or []) if stopped else set()
    for h in shown_hosts(run):  # down hosts only with -v, as nmap
        hl = _host_lines(run, h)
        if h.address in incomplete:  # a field nmap never writes: greps for Status/Ports still match
            hl = [line + "\tIncomplete: interrupted" for line in hl]
        lines.extend(hl)
    if stopped:
        phase = f" during {stopped.get('phase')}" if stopped.get("phase") else ""
        lines.append(f"# hostprint interrupted by {stopped.get('by')}{phase} at {ns.ctime(ns.finished_at(run))} -- "
                     f"{ns.done_summary(run)}; {len(incomplete)} host(s) incomplete")
    else:
        lines.append(f"# hostprint done at {ns.ctime(ns.finished_at(run))} -- {ns.done_summary(run)}")
    return "\n".join(lines) + "\n"
