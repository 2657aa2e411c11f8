"""nmap -oX compatible XML, so that nmap's own XSL, python-libnmap, Metasploit, ndiff and the other
tools that read nmap XML read hostprint's results unchanged.

The output validates against nmap's DTD (/usr/share/nmap/nmap.dtd, xmloutputversion 1.05), and
element order follows what nmap 7.93 writes (checked against its -oX output on loopback). Two
places where hostprint must bend to the DTD:

* `<nmaprun scanner=...>` is an enumeration with the single value "nmap": a document saying
  "hostprint" there is invalid and some importers refuse it. hostprint is named in the leading
  comment, in `args` (which starts with "hostprint") and `version` is hostprint's version.
* `<scaninfo type=...>` only knows nmap's scan types; hostprint's SYN|ACK probe scan is written as
  nmap writes `-sA --scanflags SYNACK`: type="ack" scanflags="SYNACK" (see SCAN_TYPES).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hostprint import __version__
from hostprint.errors import UsageError
from hostprint.model import HostResult, PortResult, ScanRun, Service
from hostprint.report import nmapstyle as ns
from hostprint.report.scripts import Item, Script, Table, service_scripts

XML_OUTPUT_VERSION = "1.05"
# nmap's DTD allows only this value (see module docstring).
SCANNER_ATTR = "nmap"
STYLESHEET = "file:///usr/share/nmap/nmap.xsl"

# hostprint scan type -> (nmap <scaninfo type>, scanflags or None, protocol).
# A SYN|ACK probe draws a RST from any listening or closed port (RFC 793: a segment acknowledging
# something never sent is answered by reset), so it classifies ports as an ACK scan does
# (unfiltered / filtered), hence base type "ack" with the flags nmap prints for --scanflags SYNACK.
SCAN_TYPES: dict[str, tuple[str, str | None, str]] = {
    "syn": ("syn", None, "tcp"),
    "connect": ("connect", None, "tcp"),
    "ack": ("ack", None, "tcp"),
    "fin": ("fin", None, "tcp"),
    "null": ("null", None, "tcp"),
    "xmas": ("xmas", None, "tcp"),
    "window": ("window", None, "tcp"),
    "maimon": ("maimon", None, "tcp"),
    "synack": ("ack", "SYNACK", "tcp"),
    "syn-ack": ("ack", "SYNACK", "tcp"),
    "syn+ack": ("ack", "SYNACK", "tcp"),
    "udp": ("udp", None, "udp"),
    "ipproto": ("ipproto", None, "ip"),
}

# Host discovery alone scans no ports; nmap -sn writes no <scaninfo> either, nor does -sI (nmap
# 7.93; the DTD has no "idle" scan type).
DISCOVERY_ONLY = frozenset({"ping", "discovery", "idle"})

# XML 1.0 forbids most C0 controls even as character references; banners are full of them.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


_NEEDS_ESCAPE = re.compile('[&<>"\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


def _clean(text: Any) -> str:
    s = "" if text is None else str(text)
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#xa;", "\r": "&#xd;",
                       "\t": "&#x9;"})


def _attr(value: Any) -> str:
    """Attribute-safe text: whitespace controls become references so parsers do not fold them."""
    if isinstance(value, int):
        return str(value)
    s = str(value)
    if not _NEEDS_ESCAPE.search(s):  # the common case: plain words and numbers
        return s
    return _clean(s).translate(_ATTR)


def _text(value: Any) -> str:
    return _clean(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tag(name: str, attrs: list[tuple[str, Any]], *, close: bool = True) -> str:
    body = "".join(f' {k}="{_attr(v)}"' for k, v in attrs if v is not None)
    return f"<{name}{body}{'/' if close else ''}>"


def _comment(text: str) -> str:
    # "--" may not appear inside an XML comment; nmap writes "-&#45;" the same way.
    return "<!-- " + _clean(text).replace("--", "-&#45;") + " -->"


@contextmanager
def _open_out(path_or_file: str | Path | IO[str]) -> Iterator[IO[str]]:
    if hasattr(path_or_file, "write"):
        yield path_or_file  # type: ignore[misc]
        return
    if str(path_or_file) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        fp = open(path_or_file, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise UsageError(f"cannot write XML output {path_or_file}: {e.strerror or e}") from None
    try:
        yield fp
    finally:
        fp.close()


def to_xml(run: ScanRun) -> str:
    out: list[str] = []
    w = out.append
    cmd = ns.command_line(run)
    startstr = ns.ctime(run.started)
    w('<?xml version="1.0" encoding="UTF-8"?>')
    w("<!DOCTYPE nmaprun>")
    w(f'<?xml-stylesheet href="{STYLESHEET}" type="text/xsl"?>')
    w(_comment(f"{ns.scanner_banner()} scan initiated {startstr} as: {cmd}"))
    w(
        _tag(
            "nmaprun",
            [
                ("scanner", SCANNER_ATTR),
                ("args", cmd),
                ("start", int(run.started)),
                ("startstr", startstr),
                ("version", __version__),
                ("xmloutputversion", XML_OUTPUT_VERSION),
            ],
            close=False,
        )
    )
    out.extend(_scaninfo(run))
    w(_tag("verbose", [("level", _int_stat(run, "verbose"))]))
    w(_tag("debugging", [("level", _int_stat(run, "debugging"))]))
    from hostprint.report.normal import shown_hosts

    stopped = ns.interruption(run)
    incomplete = set(stopped.get("incomplete") or []) if stopped else set()
    for host in shown_hosts(run):  # down hosts only with -v, as nmap
        out.append(_host(run, host, incomplete=host.address in incomplete))
    fin = ns.finished_at(run)
    finstr = ns.ctime(fin)
    up, down, total = ns.host_counts(run)
    # An interrupted run is a complete, valid document with what was measured so far (nmap leaves
    # its file cut off); the DTD's exit="error" and errormsg say why it ends early.
    ending = [("exit", "success")]
    if stopped:
        phase = f" during {stopped.get('phase')}" if stopped.get("phase") else ""
        ending = [("exit", "error"), ("errormsg", f"interrupted by {stopped.get('by')}{phase}; "
                                                  f"{len(incomplete)} host(s) incomplete")]
    w(
        "<runstats>"
        + _tag(
            "finished",
            [
                ("time", int(fin)),
                ("timestr", finstr),
                ("summary", f"hostprint {'interrupted' if stopped else 'done'} at {finstr}; {ns.done_summary(run)}"),
                ("elapsed", f"{ns.elapsed(run):.2f}"),
                *ending,
            ],
        )
        + _tag("hosts", [("up", up), ("down", down), ("total", total)])
    )
    w("</runstats>")
    w("</nmaprun>")
    return "\n".join(out) + "\n"


def _int_stat(run: ScanRun, key: str) -> int:
    v = run.stats.get(key, 0) if isinstance(run.stats, dict) else 0
    return v if isinstance(v, int) else 0


def _scaninfo(run: ScanRun) -> list[str]:
    lines: list[str] = []
    for st in run.scan_types:
        if st.lower() in DISCOVERY_ONLY:
            continue
        mapped = SCAN_TYPES.get(st.lower())
        if mapped is None:
            # No DTD value fits; say so instead of writing an invalid document.
            lines.append(_comment(f"scan type {st} has no nmap scaninfo equivalent"))
            continue
        xtype, flags, proto = mapped
        ports = run.ports_scanned.get(proto, [])
        lines.append(
            _tag(
                "scaninfo",
                [
                    ("type", xtype),
                    ("scanflags", flags),
                    ("protocol", proto),
                    ("numservices", len(set(ports))),
                    ("services", ns.port_ranges(ports)),
                ],
            )
        )
    return lines


def _addrtype(addr: str) -> str:
    return "ipv6" if ":" in addr else "ipv4"


def _host(run: ScanRun, h: HostResult, *, incomplete: bool = False) -> str:
    parts: list[str] = []
    p = parts.append
    attrs: list[tuple[str, Any]] = []
    if h.started is not None:
        attrs.append(("starttime", int(h.started)))
    if h.finished is not None:
        attrs.append(("endtime", int(h.finished)))
    if incomplete:
        attrs.append(("comment", "incomplete: the run was interrupted before this host was finished"))
    status = h.status if h.status in ("up", "down", "unknown", "skipped") else "unknown"
    if h.reasons:
        reason = h.reasons[0]
    else:
        reason = "no-response" if status == "down" else "unknown-response"
    p(
        _tag("host", attrs, close=False)
        + _tag("status", [("state", status), ("reason", reason), ("reason_ttl", 0)])
    )
    p(_tag("address", [("addr", h.address), ("addrtype", _addrtype(h.address))]))
    for other in h.addresses:  # --dual-stack: the same machine's other family (the DTD allows more <address>)
        if other.get("address"):
            p(_tag("address", [("addr", other["address"]), ("addrtype", _addrtype(str(other["address"])))]))
    if h.mac:
        p(_tag("address", [("addr", h.mac.upper()), ("addrtype", "mac")]))
    if status != "up" and not h.ports and not h.extraports:
        p("</host>")  # nmap writes down hosts as status + address only
        return "\n".join(parts)
    p(_hostnames(run, h))
    if h.ports or h.extraports:
        p("<ports>" + "\n".join(_extraports(run, h) + [_port(pr) for pr in h.ports]))
        p("</ports>")
    os_xml = _os(h)
    if os_xml:
        p(os_xml)
    if h.distance is not None:
        p(_tag("distance", [("value", h.distance)]))
    p(_sequences(h))
    p(_trace(h))
    if h.rtt_us is not None and h.rtt_us >= 0:
        p(_times(h.rtt_us))
    for w in h.warnings:
        p(_comment(f"warning: {w}"))  # the DTD has no element for it
    p("</host>")
    return "\n".join(x for x in parts if x)


def _hostnames(run: ScanRun, h: HostResult) -> str:
    """nmap's <hostnames>: the name the user typed (type="user") and the PTR answer (type="PTR")."""
    names = [(n["name"], n.get("type", "PTR")) for n in h.hostnames if n.get("name")]
    if not names and h.hostname:  # an older record: only the name, its type guessed from the command line
        names = [(h.hostname, "user" if h.hostname in run.args else "PTR")]
    body = "".join("\n" + _tag("hostname", [("name", n), ("type", t if t in ("user", "PTR") else "PTR")])
                   for n, t in names)
    return "<hostnames>" + body + "\n</hostnames>"


def _trace(h: HostResult) -> str:
    """--traceroute as nmap's <trace>: one <hop> per answering TTL."""
    if not h.trace:
        return ""
    first = h.trace[0]
    attrs: list[tuple[str, Any]] = []
    if first.get("port") is not None:
        attrs = [("port", first.get("port")), ("proto", first.get("proto", "tcp"))]
    hops = []
    for hop in h.trace:
        if not hop.get("address"):
            continue
        rtt = hop.get("rtt_us")
        hops.append(_tag("hop", [("ttl", hop.get("ttl")), ("ipaddr", hop.get("address")),
                                 ("rtt", f"{rtt / 1000:.2f}" if isinstance(rtt, (int, float)) else None),
                                 ("host", hop.get("hostname") or (h.hostname if hop.get("address") == h.address
                                                                  else None))]))
    return _tag("trace", attrs, close=False) + "\n" + "\n".join(hops) + "\n</trace>"


def _extraports(run: ScanRun, h: HostResult) -> list[str]:
    out = []
    for e in h.extraports:
        proto = ns.extraports_protocol(run, h, e)
        reasons = "".join(
            "\n" + _tag("extrareasons", [("reason", r), ("count", c), ("proto", proto)])
            for r, c in sorted(e.reasons.items(), key=lambda rc: -rc[1])
        )
        out.append(_tag("extraports", [("state", e.state), ("count", e.count)], close=False) + reasons + "\n</extraports>")
    return out


def _port(pr: PortResult) -> str:
    proto = pr.protocol if pr.protocol in ("ip", "tcp", "udp", "sctp") else "tcp"
    s = _tag("port", [("protocol", proto), ("portid", pr.port)], close=False)
    s += _tag("state", [("state", pr.state), ("reason", pr.reason or "unknown"), ("reason_ttl", pr.reason_ttl or 0)])
    if pr.service is not None:
        s += _service(pr.service)
        if pr.service.banner:
            # nmap's banner NSE script reports grabbed banners the same way.
            s += _tag("script", [("id", "banner"), ("output", pr.service.banner)])
        s += "".join(_script(x) for x in service_scripts(pr.service))
    return s + "</port>"


def _items(items: Sequence[Item]) -> str:
    out = []
    for it in items:
        key = [("key", it.key)] if it.key is not None else []
        if isinstance(it, Table):
            out.append(_tag("table", key, close=False) + _items(it.items) + "</table>")
        else:
            out.append(_tag("elem", key, close=False) + _text(it.value) + "</elem>")
    return "".join(out)


def _script(x: Script) -> str:
    """nmap's <script id output> with its structured <table>/<elem> children (nmap.dtd)."""
    return _tag("script", [("id", x.id), ("output", x.output)], close=False) + _items(x.items) + "</script>"


def _service_method(svc: Service) -> str:
    return "table" if svc.method == "port-table" else "probed"


def _service_conf(svc: Service) -> int:
    try:
        return max(0, min(10, round(float(svc.confidence) * 10)))
    except (TypeError, ValueError):
        return 0


def _service(svc: Service) -> str:
    attrs = [
        ("name", svc.name or "unknown"),
        ("product", svc.product),
        ("version", svc.version),
        ("extrainfo", svc.extrainfo),
        ("hostname", svc.hostname),
        ("ostype", svc.ostype),
        ("devicetype", svc.devicetype),
        ("tunnel", "ssl" if svc.tunnel else None),  # the DTD knows only ssl tunnels
        ("method", _service_method(svc)),
        ("conf", _service_conf(svc)),
        ("servicefp", getattr(svc, "fingerprint", None)),
    ]
    if not svc.cpe:
        return _tag("service", attrs)
    cpes = "".join(f"<cpe>{_text(c)}</cpe>" for c in svc.cpe)
    return _tag("service", attrs, close=False) + cpes + "</service>"


def _os(h: HostResult) -> str:
    matches = ns.os_matches(h)
    fp = h.os.fingerprint
    if not matches and not fp:
        return ""
    lines = ["<os>"]
    for m in matches:
        acc = ns.accuracy_percent(m)
        lines.append(_tag("osmatch", [("name", m.name), ("accuracy", acc), ("line", m.line or 0)], close=False))
        cpes = "".join(f"<cpe>{_text(c)}</cpe>" for c in m.cpe)
        cls = [
            ("type", m.device_type),
            ("vendor", m.vendor or m.family or "unknown"),
            ("osfamily", m.family or m.vendor or "unknown"),
            ("osgen", m.generation),
            ("accuracy", acc),
        ]
        lines.append(_tag("osclass", cls, close=False) + cpes + "</osclass>")
        lines.append("</osmatch>")
    if fp:
        lines.append(_tag("osfingerprint", [("fingerprint", fp)]))
    lines.append("</os>")
    return "\n".join(lines)


# host.sequence may carry nmap-shaped blocks under these keys (dicts of nmap's attribute names).
_SEQUENCE_ELEMENTS = {
    "tcpsequence": ("index", "difficulty", "values"),
    "ipidsequence": ("class", "values"),
    "tcptssequence": ("class", "values"),
}


def _sequences(h: HostResult) -> str:
    if not isinstance(h.sequence, dict):
        return ""
    out = []
    for elem, keys in _SEQUENCE_ELEMENTS.items():
        block = h.sequence.get(elem)
        if not isinstance(block, dict):
            continue
        required = keys if elem != "tcptssequence" else ("class",)
        if all(block.get(k) is not None for k in required):
            out.append(_tag(elem, [(k, block.get(k)) for k in keys]))
    return "\n".join(out)


def _times(rtt_us: float) -> str:
    """nmap's <times> is its RFC 6298 retransmission state, in microseconds. With only the smallest
    RTT known, use RFC 6298 section 2.2's state after a first sample (RTTVAR = R/2,
    RTO = SRTT + 4*RTTVAR) and nmap's 100 ms floor on the timeout."""
    srtt = int(round(rtt_us))
    rttvar = int(round(rtt_us / 2))
    to = max(100_000, srtt + 4 * rttvar)
    return _tag("times", [("srtt", srtt), ("rttvar", rttvar), ("to", to)])
