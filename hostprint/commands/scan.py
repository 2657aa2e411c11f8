"""`hostprint scan` (nmap's flags) and `hostprint discover` (nmap -sn)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time

import numpy as np

from hostprint import model
from hostprint.match import architecture, verdict
from hostprint.errors import NeedsRoot, UsageError, have_raw_sockets

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
    from hostprint.commands.amap import check_sv_db, sv_timeout, version_intensity

    p.add_argument("--sv-db", default=None, type=check_sv_db, metavar="DB",
                   help="-sV signatures: hostprint, amap[=FILE], nmap[=FILE] (comma separated; default "
                        "hostprint,nmap when nmap-service-probes is installed, else hostprint)")
    p.add_argument("--version-intensity", type=version_intensity, default=7, metavar="0-9",
                   help="-sV: also send probes of rarity up to this to ports they are not meant for (nmap's, default 7)")
    p.add_argument("--sv-timeout", type=sv_timeout, default=3.0, metavar="S", help="-sV wait for a banner / an answer (default 3)")
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
    from hostprint.engine.rate import template

    for name in ("min_rate", "max_rate"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise UsageError(f"bad --{name.replace('_', '-')} '{v:g}': must be > 0")
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


def _finish(args: argparse.Namespace, run: model.ScanRun, outs: dict[str, str | None]) -> None:
    from hostprint.report import emit_outputs
    from hostprint.report.terminal import print_run

    run.finished = time.time()
    if not args.quiet and "-" not in outs.values():
        # Like nmap without -v: down hosts are counted in the summary line, not listed one by one.
        run.stats["hosts_total"] = len(run.hosts)
        print_run(run if args.verbose else dataclasses.replace(run, hosts=[h for h in run.hosts if h.status == "up"]))
    emit_outputs(run, db=args.db, record=not args.no_db, **outs)


def _progress(args: argparse.Namespace):
    from hostprint.report.terminal import ScanProgress

    return ScanProgress({"auto": None, "always": True, "never": False}[args.progress])


def _need_raw(what: str) -> None:
    if not have_raw_sockets():
        raise NeedsRoot(what)


# ---------------------------------------------------------------------------- discover


async def _discover(targets: list[str], methods, timing, links):
    from hostprint.probes.discovery import Discovery, host_results

    d = Discovery(targets, methods, timing, links=links)
    seen = await d.run()
    return host_results(targets, seen)


def run_discover(args: argparse.Namespace) -> int:
    from hostprint.engine.link import Links

    targets = _targets(args)
    timing = _timing(args)
    outs = _outputs(args)
    _need_raw("host discovery sends ICMP, TCP, UDP and ARP probes")
    run = model.ScanRun(args=["hostprint", *sys.argv[1:]] if sys.argv else ["hostprint"], scan_types=["ping"])
    with _progress(args) as prog:
        task = prog.phase("discovery", len(targets))
        links = Links()
        try:
            hosts = asyncio.run(_discover(targets, _ping_methods(args), timing, links))
        finally:
            links.close()
        prog.advance(task, len(targets))
    for h in hosts:
        h.set_ports([])
    run.hosts = hosts
    _finish(args, run, outs)
    return 0


# ---------------------------------------------------------------------------- scan


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
    if args.scan_udp:
        kinds.append("udp")
    if not kinds and not args.ping_only:
        kinds = ["syn"] if have_raw_sockets() else ["connect"]
    return list(dict.fromkeys(kinds))


def _ports(args: argparse.Namespace, kinds: list[str]) -> dict[str, list[int]]:
    from hostprint.ports import exclude_ports, parse_ports, top_ports

    if args.ports and (args.fast or args.top_ports):
        raise UsageError("use either -p or -F/--top-ports, not both")
    if args.ports:
        ps = parse_ports(args.ports)
        # a bare list applies to every requested protocol, as in nmap
        if "udp" in kinds and not ps["udp"] and "U:" not in args.ports.upper():
            ps["udp"] = list(ps["tcp"])
    else:
        n = args.top_ports or (100 if args.fast else 1000)
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


async def _scan(args, targets, kinds, ports, timing, prog) -> tuple[list[model.HostResult], dict]:
    from hostprint.engine.link import Links
    from hostprint.probes import tcpscan
    from hostprint.probes.connect import ConnectScan
    from hostprint.probes.discovery import Discovery
    from hostprint.probes.udpscan import UdpScan

    raw = any(k != "connect" for k in kinds) or not args.no_ping or bool(args.cron_os) or args.os_detect
    links = Links() if raw else None
    stats: dict = {}
    try:
        hosts = {a: model.HostResult(a, "up", ["user-set"]) for a in targets}
        if not args.no_ping:
            task = prog.phase("discovery", len(targets))
            d = Discovery(targets, _ping_methods(args), timing, links=links)
            seen = await d.run()
            prog.advance(task, len(targets))
            for a in targets:
                s = seen.get(a)
                if s is None:
                    hosts[a] = model.HostResult(a, "down", ["no-response"])
                else:
                    hosts[a] = model.HostResult(a, "up", list(s.reasons), mac=s.mac, rtt_us=s.rtt_us,
                                                distance=tcpscan.guess_distance(s.ttl) if s.ttl else None)
            prog.update_counts(hosts_up=sum(h.status == "up" for h in hosts.values()))
        up = [a for a in targets if hosts[a].status == "up"]
        results: dict[str, list[model.PortResult]] = {a: [] for a in up}
        extras: dict[str, list[model.ExtraPorts]] = {a: [] for a in up}
        closed_sample: dict[str, int] = {}  # one closed TCP port per host, for -O
        open_total = 0
        for kind in kinds:
            if not up:
                break
            if kind == "connect":
                task = prog.phase("connect scan", len(up) * len(ports["tcp"]))
                cs = ConnectScan(up, ports["tcp"], timing)
                await cs.run()
                prog.advance(task, len(up) * len(ports["tcp"]))
                for a in up:
                    results[a] += cs.results(a)
                stats["connect"] = {"attempts": cs.attempts}
            elif kind == "udp":
                task = prog.phase("UDP scan", len(up) * len(ports["udp"]))
                us = UdpScan(up, ports["udp"], timing, links=links, data_length=args.data_length or None)
                await us.run()
                prog.advance(task, len(up) * len(ports["udp"]))
                for a in up:
                    results[a] += us.results(a)
                stats["udp"] = {"probes": us.probes}
            else:
                total = len(up) * len(ports["tcp"])
                task = prog.phase(f"{kind} scan", total)
                ts = tcpscan.TcpScan(kind, up, ports["tcp"], timing, links=links, data_length=args.data_length,
                                     progress=lambda n, _t: prog.advance(task, n))
                states = await ts.run()
                for st in states:
                    closed_idx = np.nonzero(st.state == tcpscan.RST)[0] if kind == "syn" else ()
                    if len(closed_idx):
                        closed_sample[st.address] = int(ts.ports[closed_idx[0]])
                    listed, folded = ts.results(st, fold_over=model.EXTRAPORTS_THRESHOLD)
                    results[st.address] += listed
                    extras[st.address] += folded
                    if args.no_ping and tcpscan.answered(st):
                        hosts[st.address].reasons = ["user-set"]
                s = ts.stats
                stats[kind] = {"probes": s.probes, "replies": s.replies, "rounds": s.rounds,
                               "retransmitted": s.retransmitted, "elapsed": round(s.elapsed, 3),
                               "ring_drops": s.ring_drops}
        from hostprint.services import service_name

        for a in up:
            rs = results[a]
            for r in rs:
                if r.state in (model.OPEN, model.OPEN_FILTERED, model.FILTERED, model.CLOSED) and r.service is None:
                    name = service_name(r.port, r.protocol)
                    if name and r.state != model.CLOSED:
                        r.service = model.Service(name=name, method="port-table", confidence=0.3)
            if args.only_open:
                rs = [r for r in rs if r.state == model.OPEN]
            hosts[a].set_ports(rs)
            hosts[a].extraports = sorted(hosts[a].extraports + extras[a], key=lambda e: -e.count)
            ttls = [r.reason_ttl for r in rs if r.reason_ttl]
            if hosts[a].distance is None and ttls:
                hosts[a].distance = tcpscan.guess_distance(min(ttls))
            open_total += sum(1 for r in rs if r.state == model.OPEN)
            prog.update_counts(ports_open=open_total)
            found = architecture.from_port_ttls(hosts[a])
            if found:
                hosts[a].os.setdefault("architecture", []).extend(found)
        if args.sequence:
            from hostprint.probes.sequence import sequence_report

            for a in up:
                open_ports = [p.port for p in hosts[a].ports if p.state == model.OPEN and p.protocol == "tcp"]
                if open_ports:
                    hosts[a].sequence = await sequence_report(a, open_ports[0], links or Links())
        if getattr(args, "service_scan", False):
            await _service_scan(args, hosts, up, prog)
        if args.cron_os:
            await _cron_os(args, hosts, up, links)
        if args.os_detect:
            await _os_detect(args, hosts, up, links or Links(), closed_sample, prog)
        for a in up:  # one verdict from every kind of OS evidence gathered above
            verdict.apply(hosts[a])
        return [hosts[a] for a in targets], stats
    finally:
        if links is not None:
            links.close()


async def _os_detect(args, hosts: dict[str, model.HostResult], up: list[str], links, closed_sample: dict[str, int],
                     prog) -> None:
    """-O (issue 4): nmap's second-generation probes plus hostprint's own (load-balancer twins, one
    connection's timestamp clock), classified against the selected DBs (hostprint's classes by
    default); the architecture found on the way (load balancing) joins os.architecture."""
    from hostprint.match.stack import load_matchers
    from hostprint.match.stack_report import stack_report
    from hostprint.probes.icmp_stack import IcmpStackProbe
    from hostprint.probes.stack import StackProbe

    matchers = getattr(args, "os_matchers", None) or load_matchers(args.os_db)
    p0f_db = getattr(args, "os_p0f_db", None)
    task = prog.phase("OS detection", len(up))
    # Hosts run side by side (nmap does too): each probe keeps its own replies by address and
    # cookie, so a /24 costs about what one host costs. The TCP and the ICMP (xprobe2) probe of a
    # host run together as well; they pick ICMP IDs and UDP source ports of their own.
    gate = asyncio.Semaphore(OS_PARALLEL_HOSTS)

    async def probe(a: str) -> None:
        h = hosts[a]
        open_tcp = [p.port for p in h.ports if p.protocol == "tcp" and p.state == model.OPEN]
        closed = closed_sample.get(a) or next((p.port for p in h.ports if p.protocol == "tcp" and p.state == model.CLOSED), None)
        closed_udp = next((p.port for p in h.ports if p.protocol == "udp" and p.state == model.CLOSED), 40125)
        rtt = (h.rtt_us or 0) / 1e6
        wait = min(max(8 * rtt, 0.25), 1.0) if rtt else 1.0  # until answers tell the RTT
        async with gate:
            res, icmp = await asyncio.gather(
                StackProbe(a, open_tcp[0] if open_tcp else None, closed, closed_udp, links, wait=wait).run(),
                IcmpStackProbe(a, links, closed_udp, wait=wait).run())
        prog.advance(task, 1)
        stack, found, conditions = stack_report(res, icmp, matchers, p0f_db, {
            "open": open_tcp[0] if open_tcp else None, "closed": closed, "closed_udp": closed_udp})
        h.os["stack"] = stack
        if found:
            h.os.setdefault("architecture", []).extend(found)
        if conditions:
            h.os["conditions"] = conditions
        fp = stack["fingerprint"]
        prev = h.os.get("fingerprint")
        h.os["fingerprint"] = (prev + "\n" if prev else "") + fp

    await asyncio.gather(*(probe(a) for a in up))


OS_PARALLEL_HOSTS = 64
PREFERRED_TIMING_PORTS = (80, 8080, 8000, 6379, 21, 22)


async def _cron_os(args, hosts: dict[str, model.HostResult], up: list[str], links) -> None:
    """Timing OS tests (issue 3) against the first open TCP port of every up host, all at once."""
    from hostprint.match.timing import TimingClassifier
    from hostprint.probes.timing import fingerprint_hosts, host_report, parse_tests

    targets = {}
    for a in up:
        open_ports = [p.port for p in hosts[a].ports if p.state == model.OPEN and p.protocol == "tcp"]
        if open_ports:
            # ports whose server closes promptly on our FIN / request first (probes/timing.py TRIGGERS)
            pref = {p: i for i, p in enumerate(PREFERRED_TIMING_PORTS)}
            targets[a] = sorted(open_ports, key=lambda p: (pref.get(p, len(pref)), p))[:1]
    if not targets:
        return
    db = args.timing_db_loaded
    by, _ = await fingerprint_hosts(targets, parse_tests(args.cron_os), db, timeout=args.cron_timeout,
                                    links=links)
    clf = TimingClassifier(db)
    for a, res in by.items():
        rep = host_report(clf, res, args.timing_db)
        hosts[a].os["timing"] = rep["timing"]
        if rep["architecture"]:
            hosts[a].os.setdefault("architecture", []).extend(rep["architecture"])
        fp = hosts[a].os.get("fingerprint")
        hosts[a].os["fingerprint"] = (fp + "\n" if fp else "") + rep["fingerprint"]


async def _service_scan(args, hosts: dict[str, model.HostResult], up: list[str], prog) -> None:
    """-sV (issue 5): banners, triggers and TLS on every open (and open|filtered UDP) port."""
    from hostprint.commands.amap import default_sv_db, sv_db
    from hostprint.probes.app import AppOptions, Engine, apply_to_host

    todo = [(a, p.port, p.protocol) for a in up for p in hosts[a].ports
            if p.state == model.OPEN or (p.protocol == "udp" and p.state == model.OPEN_FILTERED)]
    if not todo:
        return
    task = prog.phase("service scan", len(todo))
    w = args.sv_timeout
    reps = await Engine(AppOptions(sv_db(args.sv_db or default_sv_db()), connect_timeout=w, response_timeout=w,
                                   banner_timeout=w, retries=1, parallel=384,
                                   intensity=args.version_intensity)).scan(todo)
    prog.advance(task, len(todo))
    for a in up:
        apply_to_host(hosts[a], reps)


def run_scan(args: argparse.Namespace) -> int:
    targets = _targets(args)
    if args.cron_os:
        from hostprint.probes.timing import check_timeout, parse_tests
        from hostprint.signatures.timing_db import resolve_timing_db

        parse_tests(args.cron_os)
        check_timeout(args.cron_timeout)
        args.timing_db_loaded = resolve_timing_db(args.timing_db)  # a bad DB fails before scanning
    if args.os_detect:  # a bad or missing -O DB fails before scanning too
        from hostprint.match.stack import load_matchers

        args.os_matchers = load_matchers(args.os_db)
        if "p0f" in [x.strip() for x in args.os_db.split(",")]:
            from hostprint.match.stack_p0f import load_db

            args.os_p0f_db = load_db()
    kinds = _scan_kinds(args)
    timing = _timing(args)
    if args.data_length < 0 or args.data_length > 1400:
        raise UsageError(f"bad --data-length '{args.data_length}': use 0-1400")
    outs = _outputs(args)
    if args.ping_only:
        return run_discover(args)
    ports = _ports(args, kinds)
    if any(k != "connect" for k in kinds) or not args.no_ping or args.sequence or args.cron_os or args.os_detect:
        why = "raw scans (-sS/-sA/-sF/-sN/-sX/-sU/-sW, --scanflags) and host discovery; use -sT -Pn without root"
        _need_raw(why)
    run = model.ScanRun(args=["hostprint", *(sys.argv[1:] if sys.argv else [])], scan_types=kinds,
                        ports_scanned={k: v for k, v in ports.items() if v})
    with _progress(args) as prog:
        hosts, stats = asyncio.run(_scan(args, targets, kinds, ports, timing, prog))
    run.hosts = hosts
    run.stats = stats
    _finish(args, run, outs)
    return 0

