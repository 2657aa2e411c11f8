"""`hostprint scan` (nmap's flags) and `hostprint discover` (nmap -sn)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from typing import TYPE_CHECKING

from hostprint import model
from hostprint.errors import NeedsRoot, UsageError, have_raw_sockets

if TYPE_CHECKING:
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


def add_ping(p: argparse.ArgumentParser) -> None:
    p.add_argument("-PE", dest="ping_echo", action="store_true", help="ICMP echo")
    p.add_argument("-PP", dest="ping_timestamp", action="store_true", help="ICMP timestamp (13)")
    p.add_argument("-PM", dest="ping_mask", action="store_true", help="ICMP address mask (17)")
    # nmap glues the ports to these flags (-PS22,80); cli._normalise turns them into --ping-s=PORTS
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
    from hostprint.signatures.sv_db import check_sv_db, sv_timeout

    p.add_argument("--sv-db", default="hostprint", type=check_sv_db, metavar="DB",
                   help="-sV signatures: hostprint, amap[=FILE], nmap[=FILE] (comma separated)")
    p.add_argument("--sv-timeout", type=sv_timeout, default=5.0, metavar="S",
                   help="-sV: the most one port may take in all, every connection and read included (default 5)")
    p.set_defaults(func=run_scan)

    d = sub.add_parser("discover", help="host discovery (nmap -sn)", description="Which hosts are up, and which probes saw them.")
    add_common(d)
    add_ping(d)
    d.set_defaults(func=run_discover)


# ---------------------------------------------------------------------------- shared set-up


def _targets(args: argparse.Namespace) -> list[str]:
    from hostprint.targets import expand_targets, read_target_file, split_target_list

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
    out = expand_targets(specs, exclude=excl)
    if not out:
        raise UsageError("every target was excluded")
    return out


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


def _finish(args: argparse.Namespace, run: model.ScanRun, outs: dict[str, str | None], outputs=None) -> None:
    from hostprint.report import RunOutputs, is_stdout
    from hostprint.report.terminal import print_run

    run.finished = time.time()
    if not args.quiet and not any(is_stdout(o) for o in outs.values()):
        # Like nmap without -v: down hosts are counted in the summary line, not listed one by one.
        run.stats["hosts_total"] = len(run.hosts)
        print_run(run if args.verbose else dataclasses.replace(run, hosts=[h for h in run.hosts if h.status == "up"]))
    if outputs is None:
        outputs = RunOutputs(oJ=outs["oJ"], oX=outs["oX"], oG=outs["oG"], oN=outs["oN"], db=args.db,
                             record=not args.no_db)
    outputs.finish(run)


def _progress(args: argparse.Namespace):
    from hostprint.report.terminal import ScanProgress

    return ScanProgress({"auto": None, "always": True, "never": False}[args.progress])


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
    opts.ports = _ports(args, opts.scan_kinds)
    opts.data_length = args.data_length
    opts.only_open = args.only_open
    opts.sequence = args.sequence
    opts.os_detect, opts.os_db = args.os_detect, args.os_db
    if args.cron_os:
        from hostprint.commands.args import timing_db_files

        timing_db_files(args.timing_db)
    opts.cron_os, opts.cron_timeout, opts.timing_db = args.cron_os, args.cron_timeout, args.timing_db
    opts.service_scan, opts.sv_db, opts.sv_timeout = args.service_scan, args.sv_db, args.sv_timeout
    return opts


# ---------------------------------------------------------------------------- running


def _run(args: argparse.Namespace, opts: ScanOptions, scan_types: list[str], names: list[str] | None = None) -> int:
    """Targets and outputs checked, techniques created (DBs loaded) — all before the first packet —
    then the run, the terminal report and every output."""
    from hostprint.probes import registry, runner
    from hostprint.probes.base import Session
    from hostprint.report import RunOutputs

    targets = _targets(args)
    outs = _outputs(args)
    techniques = registry.create(opts, names)
    if any(t.needs_raw for t in techniques):
        _need_raw("raw scans (-sS/-sA/-sF/-sN/-sX/-sU/-sW, --scanflags), host discovery, -O, --sequence and "
                  "--cron-os; use -sT -Pn without root")
    outputs = RunOutputs(oJ=outs["oJ"], oX=outs["oX"], oG=outs["oG"], oN=outs["oN"], db=args.db,
                         record=not args.no_db)
    outputs.check()  # every file and the inventory, before the first packet
    run = model.ScanRun(args=["hostprint", *(sys.argv[1:] if sys.argv else [])], scan_types=scan_types,
                        ports_scanned={k: v for k, v in opts.ports.items() if v})
    outputs.start(run)
    state = runner.RunState()
    session = Session(opts.timing)
    try:
        with _progress(args) as prog:
            session.progress = prog
            try:
                run.hosts = asyncio.run(runner.run(techniques, targets, session, only_open=opts.only_open,
                                                   host_done=outputs.host_done, state=state))
            finally:
                session.close()
    except BaseException as e:  # Ctrl-C, SIGTERM, an error: what was measured goes to every output
        run.stats = dict(session.stats)
        measured = state.finished_phases > 0
        hosts = runner.partial_hosts(state, Session(opts.timing), only_open=opts.only_open) if measured else []
        raise outputs.abort(run, hosts, state.phase, e, measured=measured) from None
    run.stats = dict(session.stats)
    _finish(args, run, outs, outputs)
    return 0


def run_discover(args: argparse.Namespace) -> int:
    opts = scan_options(args, discovery_only=True)
    if not opts.ping:
        raise UsageError("host discovery with -Pn has nothing to do")
    return _run(args, opts, ["ping"], ["discovery"])


def run_scan(args: argparse.Namespace) -> int:
    if args.ping_only:
        return run_discover(args)
    opts = scan_options(args)
    return _run(args, opts, opts.scan_kinds)
