"""`hostprint scan` (nmap's flags) and `hostprint discover` (nmap -sn)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from hostprint import model
from hostprint.errors import NeedsRoot, UsageError, have_raw_sockets

if TYPE_CHECKING:
    from hostprint.engine.trace import PacketTracer
    from hostprint.probes.options import ScanOptions

RAW_SCANS = {"sS": "syn", "sA": "ack", "sW": "window", "sF": "fin", "sN": "null", "sX": "xmas", "sSA": "synack"}
SCANFLAGS = {"SYNACK": "synack", "SYN": "syn", "ACK": "ack", "FIN": "fin", "NULL": "null", "": "null",
             "FINPSHURG": "xmas", "URGPSHFIN": "xmas"}
PING_DEFAULT = {"PS": "443", "PA": "80", "PU": "40125"}


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", metavar="TARGET", help="IPs, CIDR, nmap ranges (198.18.1-3.1-254), hostnames")
    p.add_argument("-iL", dest="input_list", metavar="FILE", help="targets from a file (also nmap -oG/-oX output)")
    p.add_argument("--exclude", action="append", default=[], metavar="SPECS", help="comma-separated targets to skip")
    p.add_argument("--excludefile", metavar="FILE")
    p.add_argument("-n", dest="no_dns", action="store_true", help="never do reverse DNS")
    p.add_argument("-R", dest="always_dns", action="store_true", help="(accepted for nmap compatibility)")
    p.add_argument("-T", dest="timing", default="3", metavar="0-5", help="timing template (nmap's -T0..5)")
    p.add_argument("--min-rate", type=float, metavar="PPS")
    p.add_argument("--max-rate", type=float, metavar="PPS")
    p.add_argument("--max-retries", type=int, metavar="N")
    p.add_argument("-oJ", metavar="FILE", help="JSON lines, one object per host ('-' = stdout)")
    p.add_argument("-oX", metavar="FILE", help="nmap-compatible XML")
    p.add_argument("-oG", metavar="FILE", help="grepable")
    p.add_argument("-oN", metavar="FILE", help="normal (nmap -oN style)")
    p.add_argument("-oA", metavar="BASENAME", help="-oJ/-oX/-oG/-oN to BASENAME.{jsonl,xml,gnmap,nmap}")
    p.add_argument("--db", metavar="PATH", help="SQLite inventory (default ~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("--no-db", action="store_true", help="do not record this run in the inventory")
    p.add_argument("-q", "--quiet", action="store_true", help="no terminal report")
    p.add_argument("-v", dest="verbose", action="count", default=0)
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto")
    add_random_targets(p)


def add_ping(p: argparse.ArgumentParser) -> None:
    p.add_argument("-PE", dest="ping_echo", action="store_true", help="ICMP echo")
    p.add_argument("-PP", dest="ping_timestamp", action="store_true", help="ICMP timestamp (13)")
    p.add_argument("-PM", dest="ping_mask", action="store_true", help="ICMP address mask (17)")
    # nmap glues the ports to these flags (-PS22,80); normalise_ping turns them into --ping-s=PORTS
    p.add_argument("--ping-s", dest="ping_syn", metavar="PORTS", help="-PS[PORTS]: TCP SYN sweep (default 443)")
    p.add_argument("--ping-a", dest="ping_ack", metavar="PORTS", help="-PA[PORTS]: TCP ACK sweep (default 80)")
    p.add_argument("--ping-u", dest="ping_udp", metavar="PORTS", help="-PU[PORTS]: UDP sweep (default 40125)")
    p.add_argument("-PR", dest="ping_arp", action="store_true", help="ARP on the local link")
    p.add_argument("-PB", dest="ping_broadcast", action="store_true", help="broadcast ICMP echo on local links")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="port scan (nmap flags)", description="Port scan with nmap's flags.")
    add_common(p)
    add_ping(p)
    for flag, kind in RAW_SCANS.items():
        p.add_argument("-" + flag, dest="scan_" + kind, action="store_true", help=f"{kind} scan")
    p.add_argument("-sT", dest="scan_connect", action="store_true", help="connect() scan (no root needed)")
    p.add_argument("-sU", dest="scan_udp", action="store_true", help="UDP scan")
    p.add_argument("-sn", dest="ping_only", action="store_true", help="host discovery only")
    p.add_argument("--scanflags", metavar="FLAGS", help="SYNACK (the survey's stealth scan), FIN, ACK ...")
    p.add_argument("-p", dest="ports", metavar="PORTS", help="22,80,1000-2000,U:53,T:25 ; -p- = all")
    p.add_argument("-F", dest="fast", action="store_true", help="top 100 ports")
    p.add_argument("--top-ports", type=int, metavar="N")
    p.add_argument("--exclude-ports", metavar="PORTS")
    p.add_argument("-Pn", dest="no_ping", action="store_true", help="treat every target as up")
    p.add_argument("--data-length", type=int, default=0, metavar="N", help="random payload bytes in each probe")
    p.add_argument("--open", dest="only_open", action="store_true", help="show only open ports")
    p.add_argument("--sequence", action="store_true", help="IP ID and TCP ISN predictability report")
    p.add_argument("-O", dest="os_detect", action="store_true", help="stack OS fingerprint (nmap's probes)")
    p.add_argument("--os-db", default="hostprint", metavar="DB",
                   help="-O reference DBs, comma separated: hostprint (ours, default), nmap (the installed "
                        "nmap-os-db), p0f (p0f.fp SYN+ACK signatures) or files")
    p.add_argument("--cron-os", metavar="slf", help="timing OS tests on an open port of each up host: "
                   "s = SYN_RCVD, l = LAST_ACK, f = FIN_WAIT1 (results in os.timing)")
    p.add_argument("--cron-timeout", type=float, default=60.0, metavar="S", help="--cron-os listen limit per test (default 60, max 240)")
    p.add_argument("--timing-db", default="hostprint", metavar="DB", help="--cron-os DB: hostprint, hershel420, hershel116 or a file")
    p.add_argument("-sV", dest="service_scan", action="store_true", help="identify services on open ports (banners, triggers, TLS)")
    from hostprint.signatures.sv_db import check_sv_db, sv_timeout, version_intensity

    p.add_argument("--sv-db", default=None, type=check_sv_db, metavar="DB",
                   help="-sV signatures: hostprint, amap[=FILE], nmap[=FILE] (comma separated; default "
                        "hostprint,nmap when nmap-service-probes is installed, else hostprint)")
    p.add_argument("--version-intensity", type=version_intensity, default=7, metavar="0-9",
                   help="-sV: also send probes of rarity up to this to ports they are not meant for (nmap's, default 7)")
    p.add_argument("--sv-timeout", type=sv_timeout, default=20.0, metavar="S",
                   help="-sV: the most one port may take in all, every connection and read included (default 20; "
                        "one read waits at most 3 s)")
    p.add_argument("--dual-stack", action="store_true", help="one host for an IPv4 and an IPv6 address of the same "
                   "machine (same MAC, TCP timestamp clock, SSH host key or TLS certificate)")
    add_nmap_habits(p)
    add_scans2(p)
    p.set_defaults(func=run_scan)

    d = sub.add_parser("discover", help="host discovery (nmap -sn)", description="Which hosts are up, and which probes saw them.")
    add_common(d)
    add_ping(d)
    add_nmap_habits(d, scan=False)
    d.set_defaults(func=run_discover)


# ---------------------------------------------------------------------------- nmap habits

#: nmap flags hostprint does not have, each named in one line instead of argparse's usage dump.
UNSUPPORTED = {
    "-sC": "NSE scripts are not supported (hostprint has no script engine; -sV identifies services)",
    "--script": "NSE scripts are not supported (hostprint has no script engine; -sV identifies services)",
    "-sY": "SCTP scans (-sY/-sZ) are not supported",
    "-sZ": "SCTP scans (-sY/-sZ) are not supported",
    "-sM": "Maimon scan (-sM) is not supported; --scanflags FINACK is not either",
    "-b": "FTP bounce scan (-b) is not supported",
    "-D": "decoys (-D) are not supported",
    "--spoof-mac": "--spoof-mac is not supported",
    "--badsum": "--badsum is not supported",
    "--proxies": "--proxies is not supported",
    "-oS": "-oS (script kiddie output) is not supported",
    "-PY": "SCTP discovery (-PY) is not supported",
    "-PO": "IP protocol discovery (-PO) is not supported",
}


class _Unsupported(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        raise UsageError(f"{option_string}: {UNSUPPORTED[self.dest_flag]}")

    def __init__(self, option_strings, dest, flag: str = "", **kw):  # type: ignore[no-untyped-def]
        self.dest_flag = flag
        super().__init__(option_strings, dest, **kw)


def add_nmap_habits(p: argparse.ArgumentParser, scan: bool = True) -> None:
    """The nmap flags people type daily (README "Usage"), and one line for the ones we lack."""
    p.add_argument("--dns-servers", metavar="SERVERS", help="reverse DNS through these servers (comma separated)")
    p.add_argument("--host-timeout", metavar="TIME", help="stop probing a host after TIME (30s, 5m, 1h); what is "
                   "known is kept and the host gets a warning (nmap drops the host); -T5 means 15m")
    p.add_argument("-e", dest="iface", metavar="IFACE", help="send and receive on this interface")
    p.add_argument("-S", dest="source_addr", metavar="ADDR", help="source address of the probes")
    p.add_argument("--stats-every", metavar="TIME", help="print a status line every TIME (10s, 1m)")
    p.add_argument("--packet-trace", action="store_true", help="a line per frame sent and received, in nmap's format (stderr)")
    p.add_argument("-y", "--yes", action="store_true", help="no confirmation for more than 1,048,576 addresses")
    p.add_argument("--reason", action="store_true", help="show why each port and host has its state")
    p.add_argument("-sL", dest="list_scan", action="store_true", help="list the targets with their names; send nothing")
    p.add_argument("-6", dest="ipv6", action="store_true", help="host names resolve to IPv6 (IPv6 literals and "
                   "prefixes need no flag)")
    p.add_argument("-f", dest="fragment", action="count", default=0, help="fragment raw TCP/UDP scan and discovery "
                   "probes into 8-byte IP fragments (-ff: 16)")
    p.add_argument("--mtu", metavar="N", help="fragment probes into N-byte pieces (a multiple of 8; implies -f)")
    if scan:
        p.add_argument("-A", dest="aggressive", action="store_true", help="-sV -O --sequence --traceroute")
        p.add_argument("-g", "--source-port", dest="source_port", metavar="PORT", help="source port of raw TCP/UDP probes")
        p.add_argument("--ttl", metavar="N", help="IP TTL of raw TCP/UDP probes")
        p.add_argument("--traceroute", action="store_true", help="the hops to each up host")
        p.add_argument("--resume", metavar="FILE|RUN", help="resume an interrupted scan from its -oG, -oX or -oJ output, "
                       "or from its inventory record (a run id, 'last', -N; --db names the inventory)")
    from hostprint.commands import sharding

    sharding.add_flags(p)
    for flag in UNSUPPORTED:
        if flag in ("-sY", "-sZ", "-sI", "-sO", "-sM", "-b", "-D") and not scan:
            continue
        p.add_argument(flag, action=_Unsupported, flag=flag, nargs="?", help=argparse.SUPPRESS, dest=f"_unsup_{flag}")
    # "-6" makes argparse read every negative number as an option ("--min-rate -5" would lose its
    # value); exact option strings still match first, so "-6" itself is still caught.
    p._has_negative_number_optionals.clear()


def nmap_time(text: str | None, opt: str) -> float | None:
    """nmap's time values: a number of seconds, or with ms, s, m or h ("500ms", "30s", "5m")."""
    if text is None:
        return None
    import re

    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", text.strip())
    if not m or float(m[1]) <= 0:
        raise UsageError(f"bad {opt} '{text}': use a positive time like 500ms, 30s, 5m or 1h")
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m[2]]


def _int_in(text: str | None, opt: str, lo: int, hi: int) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise UsageError(f"bad {opt} '{text}': use {lo}-{hi}")
    return int(text)


def apply_habits(args: argparse.Namespace, opts: ScanOptions) -> None:
    """-A, the packet options and --host-timeout into the typed options (checked here)."""
    import ipaddress

    if getattr(args, "aggressive", False):
        opts.service_scan = opts.os_detect = opts.sequence = opts.traceroute = True
    opts.traceroute = opts.traceroute or getattr(args, "traceroute", False)
    opts.source_port = _int_in(getattr(args, "source_port", None), "-g/--source-port", 1, 65535)
    opts.ttl = _int_in(getattr(args, "ttl", None), "--ttl", 1, 255)
    mtu = getattr(args, "mtu", None)
    if mtu is not None:
        if not mtu.isdigit() or int(mtu) <= 0 or int(mtu) % 8 or int(mtu) > 1400:
            raise UsageError(f"bad --mtu '{mtu}': use a multiple of 8 from 8 to 1400 (nmap's rule: fragment "
                             "offsets count 8-byte units)")
        opts.fragment, opts.frag_size = True, int(mtu)
    elif getattr(args, "fragment", 0):
        opts.fragment, opts.frag_size = True, 8 * int(args.fragment)
    opts.host_timeout = nmap_time(args.host_timeout, "--host-timeout")
    if opts.host_timeout is None and opts.timing.name == "insane":
        opts.host_timeout = 900.0  # nmap's -T5 (nmap(1), "Timing and Performance")
    if args.source_addr is not None:
        try:
            ipaddress.ip_address(args.source_addr)
        except ValueError:
            raise UsageError(f"bad -S '{args.source_addr}': not an IPv4 or IPv6 address") from None
    opts.source_addr, opts.iface = args.source_addr, args.iface
    if args.iface is not None:
        import os

        if not os.path.exists(f"/sys/class/net/{args.iface}"):
            raise UsageError(f"bad -e '{args.iface}': no such interface")


# ---------------------------------------------------------------------------- shared set-up


def _timing(args: argparse.Namespace):
    from hostprint.engine.rate import check_rates, template

    check_rates(args.min_rate, args.max_rate)
    if args.max_retries is not None and args.max_retries < 0:
        raise UsageError(f"bad --max-retries '{args.max_retries}': must be >= 0")
    return template(args.timing).with_overrides(min_rate=args.min_rate, max_rate=args.max_rate,
                                                 max_retries=args.max_retries)


def _outputs(args: argparse.Namespace) -> dict[str, str | None]:
    from hostprint.report import check_output_paths

    o = {"oJ": args.oJ, "oX": args.oX, "oG": args.oG, "oN": args.oN}
    o = {k: "-" if v in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1") else v for k, v in o.items()}
    if args.oA:
        o = {"oJ": o["oJ"] or args.oA + ".jsonl", "oX": o["oX"] or args.oA + ".xml",
             "oG": o["oG"] or args.oA + ".gnmap", "oN": o["oN"] or args.oA + ".nmap"}
    check_output_paths(**o)
    return o


def _ping_methods(args: argparse.Namespace):
    from hostprint.ports import parse_ports
    from hostprint.probes.discovery import DEFAULT_METHODS, MethodSpec

    ms: list[MethodSpec] = []
    if args.ping_echo:
        ms.append(MethodSpec("echo"))
    if args.ping_timestamp:
        ms.append(MethodSpec("timestamp"))
    if args.ping_mask:
        ms.append(MethodSpec("mask"))
    if args.ping_arp:
        ms.append(MethodSpec("arp"))
    if args.ping_broadcast:
        ms.append(MethodSpec("broadcast"))
    for attr, name in (("ping_syn", "syn"), ("ping_ack", "ack"), ("ping_udp", "udp")):
        spec = getattr(args, attr)
        if spec is not None:
            proto = "udp" if name == "udp" else "tcp"
            for port in parse_ports(spec, default_proto=proto)[proto]:
                ms.append(MethodSpec(name, port))
    return ms or list(DEFAULT_METHODS)


def _finish(args: argparse.Namespace, run: model.ScanRun, outs: dict[str, str | None], reporter=None,
            outputs=None) -> None:
    """The terminal's summary, then every output: each attempted even when another fails."""
    from hostprint.report import RunOutputs

    run.finished = time.time()
    run.stats["hosts_total"] = len(run.hosts)
    if reporter is not None:
        reporter.done()
    if outputs is None:
        outputs = RunOutputs(oJ=outs["oJ"], oX=outs["oX"], oG=outs["oG"], oN=outs["oN"], db=args.db,
                             record=not args.no_db)
    outputs.finish(run)


def _progress(args: argparse.Namespace, outs: dict[str, str | None] | None = None, opts: ScanOptions | None = None):
    from hostprint.report.terminal import ScanProgress

    to_stdout = outs is not None and "-" in outs.values()
    windows = {"timing": opts.cron_timeout} if opts is not None and opts.cron_os else {}
    return ScanProgress({"auto": None, "always": True, "never": False}[args.progress], verbose=int(args.verbose or 0),
                        say=(lambda t: print(t, file=sys.stderr, flush=True)) if to_stdout or args.quiet else None,
                        stats_every=nmap_time(getattr(args, "stats_every", None), "--stats-every"), windows=windows)


def _need_raw(what: str) -> None:
    if not have_raw_sockets():
        raise NeedsRoot(what)



# ---------------------------------------------------------------------------- options


def _scan_kinds(args: argparse.Namespace) -> list[str]:
    kinds = [k for k in ("syn", "synack", "ack", "window", "fin", "null", "xmas") if getattr(args, "scan_" + k)]
    if args.scanflags is not None:
        key = args.scanflags.upper().replace("|", "").replace(",", "")
        if key not in SCANFLAGS:
            raise UsageError(f"bad --scanflags '{args.scanflags}': supported are {', '.join(k for k in SCANFLAGS if k)}")
        if "syn" in kinds:
            kinds.remove("syn")
        kinds.append(SCANFLAGS[key])
    if args.scan_connect:
        kinds.append("connect")
    given = [f"-{flag}" for flag, kind in RAW_SCANS.items() if getattr(args, "scan_" + kind)]
    if args.scanflags is not None:
        given = [g for g in given if g != "-sS"] + [f"--scanflags {args.scanflags}"]
    if args.scan_connect:
        given.append("-sT")
    if len(given) > 1:  # nmap refuses too: every port would be listed once per scan type
        raise UsageError(f"more than one type of TCP scan ({', '.join(given)}): choose one (-sU may go with it)")
    if args.scan_udp:
        kinds.append("udp")
    kinds += _scans2_kinds(args)
    if not kinds and not args.ping_only:
        kinds = ["syn"] if have_raw_sockets() else ["connect"]
    return list(dict.fromkeys(kinds))


def _ports(args: argparse.Namespace, kinds: list[str]) -> dict[str, list[int]]:
    from hostprint.ports import exclude_ports, parse_ports, top_ports

    if args.ports is not None and (args.fast or args.top_ports is not None):
        raise UsageError("use either -p or -F/--top-ports, not both")
    if args.ports is not None:
        ps = parse_ports(args.ports)
        # a bare list applies to every requested protocol, as in nmap
        if "udp" in kinds and not ps["udp"] and "U:" not in args.ports.upper():
            ps["udp"] = list(ps["tcp"])
    else:
        n = args.top_ports if args.top_ports is not None else (100 if args.fast else 1000)
        ps = {"tcp": top_ports(n, "tcp"), "udp": top_ports(n, "udp") if "udp" in kinds else [], "sctp": []}
    if args.exclude_ports:
        ps = exclude_ports(ps, args.exclude_ports)
    if "udp" not in kinds:
        ps["udp"] = []
    if not any(k != "udp" for k in kinds):
        ps["tcp"] = []
    if not ps["tcp"] and not ps["udp"]:
        raise UsageError(f"no ports to scan for the requested scan types (ports: {args.ports or 'default'})")
    return ps


def scan_options(args: argparse.Namespace, *, discovery_only: bool = False) -> ScanOptions:
    """The typed options of a `scan` / `discover` command line (every value checked here)."""
    from hostprint.probes.options import ScanOptions

    opts = ScanOptions(timing=_timing(args), ping=[] if getattr(args, "no_ping", False) else _ping_methods(args))
    if discovery_only:
        return opts
    if args.data_length < 0 or args.data_length > 1400:
        raise UsageError(f"bad --data-length '{args.data_length}': use 0-1400")
    opts.scan_kinds = _scan_kinds(args)
    port_kinds = [k for k in opts.scan_kinds if k != "ipproto"]
    opts.ports = _ports(_without_protocols(args), port_kinds) if port_kinds else {}
    opts.data_length = args.data_length
    opts.only_open = args.only_open
    opts.sequence = args.sequence
    opts.os_detect, opts.os_db = args.os_detect, args.os_db
    if args.cron_os:
        from hostprint.commands.args import timing_db_files

        timing_db_files(args.timing_db)
    opts.cron_os, opts.cron_timeout, opts.timing_db = args.cron_os, args.cron_timeout, args.timing_db
    from hostprint.signatures.sv_db import default_sv_db

    opts.service_scan, opts.sv_db, opts.sv_timeout = args.service_scan, args.sv_db or default_sv_db(), args.sv_timeout
    opts.version_intensity = args.version_intensity
    apply_scans2(args, opts)
    return opts


# ---------------------------------------------------------------------------- running

#: more addresses than this need -y (or a "y" on a terminal)
CONFIRM_OVER = 1 << 20


def _warn(text: str) -> None:
    print(f"hostprint: warning: {text}", file=sys.stderr, flush=True)


def _named_targets(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The targets (names that do not resolve are a warning and skipped, as in nmap), the names
    the user typed, and a confirmation before more than a million addresses."""
    from hostprint.targets import count_targets, expand_targets, read_target_file, split_target_list
    from hostprint.targets6 import set_family

    set_family(6 if getattr(args, "ipv6", False) else 4)
    if getattr(args, "random_targets", None) is not None:
        return _random_named(args), {}
    specs = list(args.targets)
    if args.input_list:
        specs += read_target_file(args.input_list)
    if not specs:
        raise UsageError("no targets given (e.g. hostprint scan 198.18.0.10 or -iL FILE)")
    excl: list[str] = []
    for e in args.exclude:
        excl += split_target_list(e)
    if args.excludefile:
        excl += read_target_file(args.excludefile)
    n = count_targets(specs)
    if n > CONFIRM_OVER and not getattr(args, "yes", False):
        if not sys.stdin.isatty():
            raise UsageError(f"the targets name {n:,} addresses (over {CONFIRM_OVER:,}): add -y to scan them")
        print(f"hostprint: the targets name {n:,} addresses. Scan them all? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise UsageError("not confirmed; nothing was sent")
    names: dict[str, str] = {}
    failed: list[str] = []

    def unresolved(msg: str) -> None:
        failed.append(msg)
        _warn(msg)

    out = expand_targets(specs, exclude=excl, names=names, on_unresolved=unresolved)
    if not out:
        raise UsageError("every target was excluded" if not failed else f"no target left: {failed[-1]}")
    return out, names


def _lab_route_problem(addr: str) -> str | None:
    """A lab address (198.18.0.0/15) that would leave through a default route: the scan is being
    run outside the lab by mistake, and its probes would go to whoever routes that range."""
    import ipaddress

    from hostprint.engine import route

    if ipaddress.IPv4Address(addr) not in ipaddress.IPv4Network("198.18.0.0/15"):
        return None
    tab = route.table()
    a = ipaddress.IPv4Address(addr)
    for net, r in tab.routes:
        if a in net:
            if net.prefixlen == 0:
                via = f" via {r.get('gateway')}" if r.get("gateway") else ""
                return (f"{addr} is a lab address (198.18.0.0/15) but would leave through the default route{via} "
                        f"({r.get('dev')}); skipped. Scan the lab from inside it: hostprint lab exec -- hostprint ...")
            return None
    return None


def _reachable(targets: list[str]) -> list[str]:
    """Targets with a route (others are a warning and skipped), never a lab address that would
    leave through a default route."""
    from hostprint.engine import route

    keep: list[str] = []
    problems: list[str] = []
    tab = route.table()
    for a in targets:
        if ":" in a:
            from hostprint.commands.scan6 import route_problem6

            why6 = route_problem6(a)
            if why6 is None:
                keep.append(a)
            else:
                problems.append(why6)
            continue
        why = _lab_route_problem(a)
        if why is None:
            try:
                tab.lookup(a)
            except UsageError as e:
                why = f"{e}; skipped"
        if why is None:
            keep.append(a)
        else:
            problems.append(why)
    for p in problems[:10]:
        _warn(p)
    if len(problems) > 10:
        _warn(f"... and {len(problems) - 10} more targets skipped for the same reasons")
    if not keep:
        raise UsageError(f"no target left to scan: {problems[0]}" if problems else "no target left to scan")
    return keep


def _resolver(args: argparse.Namespace):
    """Reverse DNS for the run (None with -n)."""
    from hostprint.names import ReverseDns, env_disabled, parse_servers

    if args.no_dns or env_disabled():
        return None
    servers = parse_servers(args.dns_servers) if getattr(args, "dns_servers", None) else None
    return ReverseDns(servers)


def _asked(args: argparse.Namespace, opts: ScanOptions | None) -> dict[str, object]:
    """What the run was asked, for the reports (run.stats): nmap's -v, --reason, -sV."""
    return {"verbose": int(args.verbose or 0), "reason": bool(getattr(args, "reason", False)),
            "service_scan": bool(opts is not None and opts.service_scan)}


def _packet_trace(args: argparse.Namespace) -> PacketTracer | None:
    """--packet-trace: the engine's tracer (engine/trace.py), one line per frame on stderr."""
    if not getattr(args, "packet_trace", False):
        return None
    from hostprint.engine.trace import PacketTracer

    return PacketTracer()


def _run(args: argparse.Namespace, opts: ScanOptions, scan_types: list[str], names: list[str] | None = None) -> int:
    """Targets and outputs checked, techniques created (DBs loaded) — all before the first packet —
    then the run, each host on the terminal as soon as it is done, and every output."""
    from hostprint.commands.measure import measure
    from hostprint.engine import route
    from hostprint.probes import runner
    from hostprint.probes.base import Session
    from hostprint.report import RunOutputs, is_stdout
    from hostprint.report.terminal import Reporter

    apply_habits(args, opts)
    route.set_override(iface=opts.iface, src=opts.source_addr)
    if getattr(args, "list_scan", False):
        return _list_scan(args)
    from hostprint.commands import sharding

    resumed: list[model.HostResult] = list(getattr(args, "resume_hosts", []))
    targets, user_names = _named_targets(args)
    v4_only = [f for f, kind in (("-sO", "ipproto"), ("-sI", "idle")) if kind in scan_types]
    if v4_only and any(":" in t for t in targets):
        raise UsageError(f"{'/'.join(v4_only)} works over IPv4 only (the idle scan reads the IPv4 ID; the protocol "
                         "scan is not ported to IPv6): leave out the IPv6 targets")
    tcp_raw = [k for k in scan_types if k in ("syn", "synack", "ack", "window", "fin", "null", "xmas")]
    tcp_ping = [m.name for m in opts.ping if m.name in ("syn", "ack")]
    if opts.fragment and (tcp_raw or tcp_ping) and any(":" in t for t in targets):
        raise UsageError("-f/--mtu: TCP probes over IPv6 are not fragmented (RFC 7112: the first fragment must hold the "
                         "whole TCP header; Linux answers ICMPv6 parameter problem; nmap refuses -f with -6 too): drop "
                         "-f or the IPv6 targets" + (" (or use -PE/-PU discovery)" if tcp_ping and not tcp_raw else ""))
    plan = sharding.plan_run(args, opts, targets, names, {h.address for h in resumed})
    resumed = [h for h in resumed if h.address in plan.skipped]  # hosts of this run (and shard) only
    if not plan.runs:
        if getattr(args, "shard_skip", None) and plan.skipped:
            return 0  # a cluster task re-run whose dead first attempt streamed every host: nothing left
        if resumed:
            raise UsageError(f"--resume {args.resume_file}: every target is already done")
        raise UsageError("this shard has no targets (more shards than target x port pairs)")
    outs = _outputs(args)
    if any(t.needs_raw for t in plan.techniques):
        _need_raw("raw scans (-sS/-sA/-sF/-sN/-sX/-sU/-sW, --scanflags), host discovery, -O, --sequence and "
                  "--cron-os; use -sT -Pn without root")
    plan.keep(_reachable(plan.addresses))
    outputs = RunOutputs(oJ=outs["oJ"], oX=outs["oX"], oG=outs["oG"], oN=outs["oN"], db=args.db,
                         record=not args.no_db, json_extra=plan.json_extra())
    outputs.check()  # every file and the inventory, before the first packet
    argv = getattr(args, "resume_argv", None) or ["hostprint", *(sys.argv[1:] if sys.argv else [])]
    run = model.ScanRun(args=argv, scan_types=scan_types, ports_scanned={k: v for k, v in opts.ports.items() if v})
    if getattr(args, "resume_run_id", None):
        run.id = args.resume_run_id  # the resumed run takes the interrupted one's place in the inventory
    run.stats.update(_asked(args, opts))
    run.stats.update(sharding.stats(plan))
    outputs.start(run)
    reporter = None
    if not args.quiet and not any(is_stdout(o) for o in outs.values()):
        reporter = Reporter(run, verbose=int(args.verbose or 0), reason=bool(getattr(args, "reason", False)))
    started = time.time()

    paired_later = bool(getattr(args, "dual_stack", False))  # hosts are folded at the end: nothing streams

    def host_done(h: model.HostResult) -> None:
        h.started, h.finished = started, time.time()
        if paired_later:
            return
        outputs.host_done(h)
        if reporter is not None:
            reporter.host(h)

    resolver = _resolver(args)
    state = runner.RunState()

    async def go() -> list[model.HostResult]:
        try:
            hosts: list[model.HostResult] = []
            for targets, techniques in plan.runs:
                hosts += await runner.run(techniques, targets, session, only_open=opts.only_open, host_done=host_done,
                                          names=resolver, resolve_all=bool(args.always_dns), user_names=user_names,
                                          state=state, group_size=plan.group_size or runner.GROUP_SIZE)
            return hosts
        finally:
            if resolver is not None:
                resolver.close()

    session = Session(opts.timing, tracer=_packet_trace(args), host_timeout=opts.host_timeout)
    run.hosts = measure(go, run=run, session=session, state=state, outputs=outputs, progress=_progress(args, outs, opts),
                        only_open=opts.only_open, before=resumed)
    run.stats.update(session.stats)
    if getattr(args, "dual_stack", False):
        from hostprint.commands.scan6 import dual_stack

        run.hosts = dual_stack(run.hosts, say=lambda t: print(f"hostprint: {t}", file=sys.stderr, flush=True))
    if resumed:  # the finished hosts go back into every output, in front; they were shown before
        done = {h.address for h in run.hosts}
        run.hosts = [h for h in resumed if h.address not in done] + run.hosts
        if reporter is not None:
            reporter.printed.update(h.address for h in resumed)
    _finish(args, run, outs, reporter, outputs)
    return 0


def _list_scan(args: argparse.Namespace) -> int:
    """-sL: every target with its names (user-typed, and PTR unless -n), nothing sent to them."""
    from hostprint.names import env_disabled, parse_servers, resolve_names
    from hostprint.report.terminal import Reporter

    targets, user_names = _named_targets(args)
    outs = _outputs(args)
    run = model.ScanRun(args=["hostprint", *(sys.argv[1:] if sys.argv else [])], scan_types=["list"])
    run.stats.update(_asked(args, None))
    ptr: dict[str, str] = {}
    if not args.no_dns and not env_disabled():
        ptr = resolve_names(targets, parse_servers(args.dns_servers) if args.dns_servers else None)
    for a in targets:
        h = model.HostResult(a, "unknown", ["user-set"])
        if a in user_names:
            h.add_hostname(user_names[a], "user")
        if a in ptr:
            h.add_hostname(ptr[a], "PTR")
        run.hosts.append(h)
    reporter = None
    if not args.quiet and "-" not in outs.values():
        reporter = Reporter(run, verbose=1, reason=False)
    _finish(args, run, outs, reporter)
    return 0


def run_discover(args: argparse.Namespace) -> int:
    opts = scan_options(args, discovery_only=True)
    if not opts.ping and not getattr(args, "list_scan", False):
        raise UsageError("host discovery with -Pn has nothing to do")
    return _run(args, opts, ["ping"], ["discovery"])


def _resume(args: argparse.Namespace) -> argparse.Namespace:
    """--resume FILE: the interrupted scan's own command line (read from its -oG/-oX/-oJ output),
    with the hosts it finished kept and skipped (nmap's --resume)."""
    from hostprint.commands.sharding import resume_source

    state = resume_source(args.resume, args.db)
    argv = list(state.args)
    if argv and argv[0].rsplit("/", 1)[-1].startswith("hostprint"):
        argv = argv[1:]
    if not argv:
        raise UsageError(f"--resume {args.resume}: no command line found in the file")
    if argv[0] not in ("scan", "discover"):
        argv = ["scan", *argv]
    if "--resume" in argv:
        raise UsageError(f"--resume {args.resume}: the file is the output of a resumed scan; resume from the original")

    class _P(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[no-untyped-def,override]
            raise UsageError(f"--resume {args.resume}: its command line: {message}")

    parser = _P(prog="hostprint")
    register(parser.add_subparsers(dest="command", parser_class=_P))
    new = parser.parse_args(normalise_ping(argv))
    new.resume_hosts = state.hosts
    new.resume_file = args.resume
    new.resume_argv = ["hostprint", *argv]
    new.resume_run_id = state.run_id
    return new


def normalise_ping(argv: list[str]) -> list[str]:
    """nmap glues values to some flags (-PS22,80, -PU53); split them so argparse sees them."""
    return [f"--ping-{a[2].lower()}={a[3:] or PING_DEFAULT[a[1:3]]}" if a[:3] in ("-PS", "-PA", "-PU") else a
            for a in argv]


def run_scan(args: argparse.Namespace) -> int:
    if getattr(args, "resume", None):
        args = _resume(args)
        if args.command == "discover":
            return run_discover(args)
    if args.ping_only:
        return run_discover(args)
    opts = scan_options(args)
    return _run(args, opts, opts.scan_kinds)


# ---------------------------------------------------------------------------- -sO, -sI, -iR, enumeration
# (issue 20: the survey's remaining techniques; kept together so the hunks above stay small)


def add_random_targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("-iR", dest="random_targets", type=int, metavar="N",
                   help="N random IPv4 targets, never special-purpose (IANA), unallocated or multicast space, "
                        "nor --exclude/--excludefile")


def add_scans2(p: argparse.ArgumentParser) -> None:
    p.add_argument("-sO", dest="scan_ipproto", action="store_true",
                   help="IP protocol scan: which IP protocols (0-255) each host speaks; -p names protocols")
    p.add_argument("-sI", dest="zombie", metavar="ZOMBIE[:PORT]",
                   help="idle scan through ZOMBIE's IP ID counter (port 80 unless given); see `hostprint zombies`")
    p.add_argument("--snmp-community", dest="snmp_community", action="append", metavar="NAME",
                   help="-sV enumeration: SNMP community to read (default public; repeat for several)")


def _scans2_kinds(args: argparse.Namespace) -> list[str]:
    kinds = []
    if getattr(args, "scan_ipproto", False):
        kinds.append("ipproto")
    if getattr(args, "zombie", None):
        kinds.append("idle")
    return kinds


def _protocol_split(spec: str | None, only_protocols: bool) -> tuple[str | None, str | None]:
    """(-p without its protocol part, the protocol part): with -sO alone all of -p names IP
    protocols (nmap); beside other scans only the items after a `P:` prefix do."""
    if spec is None:
        return None, None
    if only_protocols:
        return None, spec.replace("P:", "").replace("p:", "")
    ports: list[str] = []
    protos: list[str] = []
    current = ports
    for item in spec.split(","):
        it = item.strip()
        if it[:2].upper() == "P:":
            current, it = protos, it[2:]
        elif it[:2].upper() in ("T:", "U:", "S:"):
            current = ports
        current.append(it)
    return (",".join(ports) or None), (",".join(protos) or None)


def _without_protocols(args: argparse.Namespace) -> argparse.Namespace:
    """args for the port parser: -p without the protocols -sO takes from it."""
    if not getattr(args, "scan_ipproto", False):
        return args
    rest, _protos = _protocol_split(args.ports, False)
    return argparse.Namespace(**{**vars(args), "ports": rest})


def apply_scans2(args: argparse.Namespace, opts: ScanOptions) -> None:
    """-sO's protocols, -sI's zombie, -sV's enumeration and its SNMP communities (checked here)."""
    if "ipproto" in opts.scan_kinds:
        from hostprint.probes.ipproto import ALL_PROTOCOLS, parse_protocols

        only = opts.scan_kinds == ["ipproto"]
        _rest, spec = _protocol_split(args.ports, only)
        if only and (args.fast or args.top_ports):
            raise UsageError("-sO scans protocols: use -p to choose them (default: all 256), not -F/--top-ports")
        opts.ports["ip"] = parse_protocols(spec) if spec else list(ALL_PROTOCOLS)
    if getattr(args, "zombie", None):
        opts.zombie, opts.zombie_port = parse_zombie(args.zombie)
    opts.enumerate = opts.service_scan
    if getattr(args, "snmp_community", None):
        bad = [c for c in args.snmp_community if not c or len(c) > 255]
        if bad:
            raise UsageError(f"bad --snmp-community '{bad[0]}': 1-255 characters")
        opts.snmp_communities = list(dict.fromkeys(args.snmp_community))


def parse_zombie(text: str) -> tuple[str, int]:
    """-sI ZOMBIE[:PORT] -> (address, port); a name resolves to its first IPv4 address."""
    from hostprint.targets import expand_targets

    host, _, port_s = text.partition(":")
    port = 80
    if port_s:
        if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
            raise UsageError(f"bad -sI '{text}': the zombie port must be 1-65535")
        port = int(port_s)
    try:
        addrs = expand_targets([host])
    except UsageError as e:
        raise UsageError(f"bad -sI '{text}': {e}") from None
    if len(addrs) != 1:
        raise UsageError(f"bad -sI '{text}': the zombie is one host, not {len(addrs)} addresses")
    return addrs[0], port


def _random_named(args: argparse.Namespace) -> list[str]:
    """-iR N: random addresses outside what must never be scanned (targets.random_targets)."""
    from hostprint.targets import random_targets, read_target_file, split_target_list

    if args.targets or args.input_list:
        raise UsageError("-iR chooses the targets: give either -iR N or targets/-iL, not both")
    n = args.random_targets
    if n < 1 or n > CONFIRM_OVER:
        raise UsageError(f"bad -iR '{n}': use 1-{CONFIRM_OVER}")
    excl: list[str] = []
    for e in args.exclude:
        excl += split_target_list(e)
    if args.excludefile:
        excl += read_target_file(args.excludefile)
    from hostprint.probes.shard import parse_seed

    seed = getattr(args, "seed", None)
    return random_targets(n, seed=None if seed is None else parse_seed(seed), exclude=excl,
                          family=6 if getattr(args, "ipv6", False) else 4)
