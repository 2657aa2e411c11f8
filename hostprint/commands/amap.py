"""`hostprint amap TARGET PORT…`: amap's application mapping with amap's options and output.

Why a separate command and not only `scan -sV`: amap users script against its flags, its line
format and its `-m` colon format; keeping them lets those scripts run unchanged, while the
engine (hostprint/probes/app.py) and the signature DBs are shared with `scan -sV`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

from hostprint import model
from hostprint.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("amap", help="application mapping (amap's options)",
                       description="Identify applications on ports with banners and triggers (amap's method).")
    p.add_argument("target", nargs="?", metavar="TARGET", help="address or hostname")
    p.add_argument("ports", nargs="*", metavar="PORT", help="ports: 22 80 8000-8010 (commas allowed)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("-A", dest="mode", action="store_const", const="map", help="map applications (default)")
    m.add_argument("-B", dest="mode", action="store_const", const="banner", help="just grab banners, no triggers")
    m.add_argument("-P", dest="mode", action="store_const", const="portscan", help="connect port scan only")
    p.add_argument("-1", dest="first", action="store_true", help="stop at the first identification per port")
    p.add_argument("-b", dest="print_banner", action="store_true", help="print the banner of identified ports")
    p.add_argument("-d", dest="dump", action="store_true", help="hex-dump every response")
    p.add_argument("-i", dest="input", metavar="FILE", help="targets from nmap -oG (or -oM) / -oX output")
    p.add_argument("-o", dest="logfile", metavar="FILE", help="log to FILE (existing FILE becomes FILE.old)")
    p.add_argument("-m", dest="machine", action="store_true", help="-o output machine readable (colon separated)")
    p.add_argument("-D", dest="defs", metavar="FILE", help="amap definitions FILE.trig/.resp/.rpc (or a directory)")
    p.add_argument("--sv-db", default=None, metavar="DB",
                   help="signature DBs, comma separated: hostprint (default), amap[=FILE], nmap[=FILE]")
    p.add_argument("-p", dest="only_trigger", metavar="PROTO", help="send only the trigger(s) named PROTO")
    p.add_argument("-H", dest="harmless", action="store_true", help="do not send triggers marked harmful")
    p.add_argument("-U", dest="hide_unrecognised", action="store_true", help="do not dump unrecognised responses")
    p.add_argument("-R", dest="no_rpc", action="store_true", help="no RPC identification")
    p.add_argument("-S", dest="no_ssl", action="store_true", help="do not look behind SSL")
    p.add_argument("-c", dest="cons", type=int, default=32, metavar="CONS", help="parallel connections (1-256, default 32)")
    p.add_argument("-C", dest="retries", type=int, default=3, metavar="RETRIES", help="reconnects on connect timeout (default 3)")
    p.add_argument("-T", dest="connect_timeout", type=float, default=5, metavar="SEC", help="connect timeout (default 5)")
    p.add_argument("-t", dest="response_timeout", type=float, default=5, metavar="SEC", help="response timeout (default 5)")
    p.add_argument("-q", dest="quiet", action="store_true", help="do not report closed ports")
    p.add_argument("-v", dest="verbose", action="count", default=0)
    p.add_argument("-u", dest="udp", action="store_true", help="ports on the command line are UDP")
    p.add_argument("-oJ", metavar="FILE", help="JSON lines (hostprint's schema, '-' = stdout)")
    p.add_argument("--db", metavar="PATH", help="SQLite inventory (default ~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("--no-db", action="store_true", help="do not record this run in the inventory")
    p.set_defaults(func=run, mode=None)


# ---------------------------------------------------------------------------- inputs


def parse_port_args(words: list[str]) -> list[int]:
    out: list[int] = []
    for w in words:
        for part in w.split(","):
            if not part:
                continue
            lo, dash, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi) if dash else int(lo)
            except ValueError:
                raise UsageError(f"bad port {part!r}") from None
            if not (1 <= a <= b <= 65535):
                raise UsageError(f"bad port {part!r} (1-65535)")
            out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))


def read_nmap_file(path: str) -> list[tuple[str, int, str]]:
    """Open ports from nmap -oG or -oX output (amap's -i): (address, port, proto)."""
    from hostprint.targets import read_nmap_results

    return [(a, p, proto) for a, ports in read_nmap_results(path).items() for p, proto, state, _name in ports
            if state == "open" and proto in ("tcp", "udp")]


def _db(args: argparse.Namespace):
    from hostprint.signatures import amap as amap_db
    from hostprint.signatures.sv_db import sv_db

    if args.defs:
        db = amap_db.load(args.defs)
        return db.extend(sv_db(args.sv_db)) if args.sv_db else db
    return sv_db(args.sv_db or "hostprint")


def options_from(args: argparse.Namespace, db):
    from hostprint.probes.app import AppOptions

    if not 1 <= args.cons <= 256:
        raise UsageError(f"bad -c {args.cons}: use 1-256")
    if args.retries < 0:
        raise UsageError(f"bad -C {args.retries}: must be >= 0")
    for flag, v in (("-T", args.connect_timeout), ("-t", args.response_timeout)):
        if not 0 < v <= 240:
            raise UsageError(f"bad {flag} {v:g}: use 1-240 seconds")
    mode = args.mode or "map"
    if args.only_trigger and not db.trigger(args.only_trigger.lower()) and not db.trigger(args.only_trigger):
        raise UsageError(f"bad -p {args.only_trigger!r}: no such trigger")
    return AppOptions(db, connect_timeout=args.connect_timeout, response_timeout=args.response_timeout,
                      banner_timeout=args.response_timeout, retries=max(1, args.retries), parallel=args.cons,
                      first=args.first or mode != "map", banners_only=mode == "banner",
                      portscan_only=mode == "portscan", harmless_only=args.harmless,
                      only_trigger=(args.only_trigger if db.trigger(args.only_trigger or "") else
                                    (args.only_trigger or "").lower() or None),
                      ssl=not args.no_ssl, rpc=not args.no_rpc)


# ---------------------------------------------------------------------------- output


def _ident(m) -> str:
    f = m.fields
    extra = " ".join(x for x in (f.get("product"), f.get("version")) if x)
    if f.get("extrainfo"):
        extra += f" ({f['extrainfo']})" if extra else f["extrainfo"]
    return m.service + (f" [{extra}]" if extra else "")


def _escape_banner(b: bytes) -> str:
    s = b[:256].decode("latin-1").replace(":", "")
    return s.translate({10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 12: "\\f", 92: "\\\\"})


def _full_banner(b: bytes) -> str:
    if all(32 <= c < 127 or c in (9, 10, 13) for c in b) and b":" not in b and b'"' not in b:
        return '"' + _escape_banner(b) + '"'
    return "0x" + b.hex()


def report_lines(reps, args) -> tuple[list[str], list[str]]:
    """(terminal lines, machine lines) in amap's formats."""
    from hostprint.probes.app import NULL, hexdump, printable, suggest

    out: list[str] = []
    machine: list[str] = []
    unident: list[str] = []
    mode = args.mode or "map"
    for r in reps:
        where = f"{r.address}:{r.port}/{r.proto}"
        first_data = next((x.data for x in r.responses if x.data), b"")
        if r.status in ("closed", "unreachable") or (r.status == "timeout" and r.proto == "tcp"):
            if not args.quiet:
                out.append(f"Port on {where} is {'CLOSED' if r.status == 'closed' else 'TIMEOUT'}")
            machine.append(f"{r.address}:{r.port}:{r.proto}:{'closed' if r.status == 'closed' else 'timeout'}::::")
            continue
        if mode == "portscan":
            out.append(f"Port on {where} is {'OPEN' if r.status == 'open' else r.status.upper()}")
            machine.append(f"{r.address}:{r.port}:{r.proto}:open::::")
            continue
        if mode == "banner":
            if first_data:
                out.append(f"Banner on {where} : {printable(first_data[:256])}")
            elif r.proto == "udp":
                out.append(f"Port on {where} is open or filtered, no banner")
            machine.append(f"{r.address}:{r.port}:{r.proto}:open:::{_escape_banner(first_data)}:{_full_banner(first_data)}")
            continue
        if r.tls:
            t = r.tls
            if "error" in t:
                out.append(f"SSL on {where}: handshake failed ({t['error']})")
            else:
                c = t.get("cert", {})
                out.append(f"SSL on {where}: {t.get('version')} {t.get('cipher')}; subject {c.get('subject')}; "
                           f"issuer {c.get('issuer')}; SANs {', '.join(c.get('sans', [])) or '-'}; "
                           f"valid {c.get('not_before')} - {c.get('not_after')}; sha256 {c.get('sha256')}")
        for m, tls in r.matches:
            resp = next((x.data for x in r.responses if x.trigger == m.trigger and x.tls == tls and x.data), b"")
            line = (f"Protocol on {where} {'over SSL ' if tls else ''}"
                    f"{'(by trigger ' + m.trigger + ') ' if m.trigger != NULL else ''}matches {_ident(m)}")
            if args.print_banner and resp:
                line += f" - banner: {printable(resp[:256])}"
            out.append(line)
            machine.append(f"{r.address}:{r.port}:{r.proto}:open:{'SSL' if tls else ''}:{m.service}:"
                           f"{_escape_banner(resp)}:{_full_banner(resp)}")
        if r.rpc:
            x = r.rpc
            out.append(f"Protocol on {where} matches rpc-{x['name']}-v{x['high']} (RPC #{x['program']} v{x['low']}-{x['high']})")
            machine.append(f"{r.address}:{r.port}:{r.proto}:open:{'SSL' if r.tls else ''}:rpc-{x['name']}-v{x['high']}::")
        if args.dump or not (r.matches or args.hide_unrecognised):
            # identical answers to several triggers are one block naming every trigger
            groups: dict[tuple[bytes, bool, bool], list] = {}
            for x in r.responses:
                if not x.data:
                    continue
                matched = any(m.trigger == x.trigger and t == x.tls for m, t in r.matches)
                if matched and not args.dump:
                    continue
                groups.setdefault((x.data, x.tls, matched), []).append(x)
            for (data, tls, matched), xs in groups.items():
                names = [x.trigger for x in xs]
                how = ("banner" if names == [NULL] else
                       "banner and " * (NULL in names) + ("trigger " if len(names) - (NULL in names) == 1 else "triggers ")
                       + ", ".join(n for n in names if n != NULL))
                head = "Response" if matched else "Unrecognized response"
                out.append(f"{head} from {where} {'over SSL ' if tls else ''}(by {how}) received:")
                out.append(hexdump(data))
                if not matched:
                    out.append("Suggested rules (hostprint app_*.txt, then amap appdefs.resp):")
                    out += ["  " + s for s in suggest(xs[0], r.proto)]
        if not r.matches:
            if r.wrapped:
                out.append(f"Protocol on {where} matches tcpwrapped (accepted and closed without a word)")
            unident.append(where)
            if not r.tls:
                machine.append(f"{r.address}:{r.port}:{r.proto}:open::unidentified:"
                               f"{_escape_banner(first_data)}:{_full_banner(first_data) if first_data else ''}")
    if mode == "map" and (unident or not args.quiet):
        out.append(f"Unidentified ports: {', '.join(unident) if unident else 'none'} (total {len(unident)}).")
    return out, machine


def _open_log(path: str) -> TextIO:
    if os.path.exists(path):
        try:
            os.replace(path, path + ".old")
        except OSError as e:
            raise UsageError(f"cannot rename {path} to {path}.old: {e.strerror}") from None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write -o {path}: {e.strerror}") from None


def _hosts(targets: list[tuple[str, int, str]]) -> dict[str, model.HostResult]:
    """The ports amap is told to map, as hosts the service technique probes (state 'open': amap
    tries every port it is given; what the engine finds replaces the state)."""
    hosts: dict[str, model.HostResult] = {}
    for a, p, proto in targets:
        h = hosts.setdefault(a, model.HostResult(a, "up", ["user-set"]))
        h.ports.append(model.PortResult(p, proto, model.OPEN if proto == "tcp" else model.OPEN_FILTERED, "amap"))
    return hosts


def settle(hosts: dict[str, model.HostResult], by: dict, *, stopped: bool = False) -> None:
    """Each port's state from what the engine found (amap tries every port it is given). A run that
    was stopped (`stopped`) keeps only the ports whose report came back: the others were not
    finished, and their state is unknown."""
    states = {"open": model.OPEN, "closed": model.CLOSED, "open|filtered": model.OPEN_FILTERED}
    for h in hosts.values():
        reps = {(r.port, r.proto): r for r in by.get(h.address, [])}
        if stopped:
            h.ports = [p for p in h.ports if (p.port, p.protocol) in reps]
        for p in h.ports:
            r = reps.get((p.port, p.protocol))
            p.state = states.get(r.status if r else "", model.FILTERED)


def run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from hostprint.commands.measure import measure
    from hostprint.engine.rate import template
    from hostprint.match import verdict
    from hostprint.probes import runner
    from hostprint.probes.app import ServiceScan
    from hostprint.probes.base import NoProgress, Session
    from hostprint.report import RunOutputs

    if args.machine and not args.logfile:
        raise UsageError("-m needs -o FILE (amap: machine-readable log output)")
    targets: list[tuple[str, int, str]] = []
    if args.input:
        targets += read_nmap_file(args.input)
    if args.target:
        if not args.ports:
            raise UsageError(f"no ports given for {args.target} (hostprint amap TARGET PORT…)")
        from hostprint.targets import expand_targets

        addrs = expand_targets([args.target])
        ports = parse_port_args(args.ports)
        targets += [(a, p, "udp" if args.udp else "tcp") for a in addrs for p in ports]
    if not targets:
        raise UsageError("no targets (hostprint amap TARGET PORT… or -i NMAPFILE)")
    db = _db(args)
    opts = options_from(args, db)
    order = {t: i for i, t in enumerate(targets)}
    shown: list = []  # the reports the -o log shows: all of them, or as far as a stop let them get
    stop_line: list[str] = []

    def write_log(_run: model.ScanRun) -> None:
        lines, machine = report_lines(shown, args)
        with _open_log(args.logfile) as f:
            if args.machine:
                f.write("# IP_ADDRESS:PORT:PROTOCOL:PORT_STATUS:SSL:IDENTIFICATION:PRINTABLE_BANNER:FULL_BANNER\n")
                f.write("".join(ln + "\n" for ln in machine + ["# " + x for x in stop_line]))
            else:
                f.write("\n".join(lines + stop_line) + "\n")

    outputs = RunOutputs(oJ=args.oJ, db=args.db, record=not args.no_db, others={"-o": (args.logfile, write_log)})
    outputs.check()  # every file and the inventory, before the first connection
    if args.verbose:
        print(f"hostprint amap: {len(db.triggers)} triggers, {len(db.rules)} responses, {len(db.rpc)} rpc "
              f"({len(db.skipped)} lines skipped)", file=sys.stderr)
        for s in db.skipped[: 20 if args.verbose > 1 else 5]:
            print(f"  skipped {s}", file=sys.stderr)
    t0 = time.time()
    tech = ServiceScan(opts)
    hosts = _hosts(targets)
    run_ = model.ScanRun(args=["hostprint", *sys.argv[1:]], scan_types=["amap"])
    outputs.start(run_)
    state = runner.RunState(ports_done=set(hosts))  # the ports are given, not scanned: nothing to fold
    by: dict = {}

    def reports(found: dict) -> list:
        return sorted((r for rs in found.values() for r in rs), key=lambda r: order.get((r.address, r.port, r.proto), 0))

    def stopped(_hosts: list[model.HostResult]) -> None:
        settle(hosts, state.partial, stopped=True)
        finished = tech.finished_ports()
        for h in hosts.values():  # a host whose every port ended is complete, not "incomplete"
            if all((a, p, pr) in finished for a, p, pr in targets if a == h.address):
                outputs.host_done(h)
        shown[:] = reports(state.partial)
        stop_line.append(f"hostprint amap interrupted: {len(shown)} of {len(targets)} ports finished "
                         f"or identified in {time.time() - t0:.2f} s")

    session = Session(template("3"))

    async def go() -> list[model.HostResult]:
        by.update(await runner.run_phase(tech, list(hosts.values()), session, state))
        return list(hosts.values())

    run_.hosts = measure(go, run=run_, session=session, state=state, outputs=outputs,
                         progress=nullcontext(NoProgress()), settle=stopped)
    settle(hosts, by)
    for h in run_.hosts:
        verdict.apply(h.os)
    run_.finished = time.time()
    shown[:] = reports(by)
    if args.oJ != "-":
        lines, _machine = report_lines(shown, args)
        for ln in lines:
            print(ln)
        print(f"hostprint amap finished: {len(targets)} ports in {time.time() - t0:.2f} s")
    outputs.finish(run_)
    return 0
