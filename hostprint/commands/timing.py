"""`hostprint timing …`: retransmission-timing OS fingerprinting (the Cron-OS method).

Live: `hostprint timing TARGET... -p PORT [--tests slf] [--cron-timeout S] [--full] -oJ FILE`
runs the SYN_RCVD (s), LAST_ACK (l) and FIN_WAIT1 (f) tests against every target at once (needs
root; the RST guard keeps our kernel quiet) and classifies each host.
Offline: `hostprint timing classify OBS.csv --timing-db FILE -oJ OUT` classifies recorded
observations (captures, other tools, the benchmark). The first positional decides the mode.

OBS.csv: a header line, then one row per observation with the columns
  obs_id, window, ttl, df, options, mss, rst, rst_ack, rst_win, rst_nonzero, n_arrivals, t0, t1, …
times in seconds since our probe; t0 … t{n_arrivals-1} are every received packet, the last one being
the RST when rst = 1 (Hershel's convention). Optional columns `test` (syn|lastack|finwait) and `rtt`
(seconds) are used when present; other columns are ignored; an empty header field = not measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import TextIO

from hostprint.errors import UsageError
from hostprint.match.timing import TimingClassifier, TimingObservation, VerdictDict
from hostprint.signatures.timing_db import TESTS, resolve_timing_db

REQUIRED = ("obs_id", "n_arrivals")
INT_COLUMNS = ("window", "ttl", "df", "mss", "rst", "rst_ack", "rst_win", "rst_nonzero")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "timing",
        help="timing OS fingerprinting; offline: `timing classify OBS.csv --timing-db DB -oJ OUT`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="+", metavar="classify OBS.csv | TARGET",
                   help="`classify OBS.csv` classifies recorded observations")
    p.add_argument("--timing-db", default="hostprint", metavar="DB",
                   help="hostprint (built-in, default), hershel420, hershel116, or a DB file in "
                        "hostprint's Cron-OS format or the Hershel format (auto-detected)")
    p.add_argument("--timing-db-mapping", metavar="FILE", help="ID,Label file for a Hershel-format DB")
    p.add_argument("-oJ", metavar="FILE", help="JSON lines, one object per observation ('-' = stdout, default)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="alternatives to list (default 5)")
    add_live_options(p)
    p.add_argument("-oX", metavar="FILE", help="live mode: nmap-compatible XML")
    p.add_argument("-oG", metavar="FILE", help="live mode: grepable output")
    p.add_argument("-oN", metavar="FILE", help="live mode: normal output")
    p.add_argument("-oA", metavar="BASENAME", help="live mode: -oJ/-oX/-oG/-oN to BASENAME.{jsonl,xml,gnmap,nmap}")
    p.add_argument("--db", metavar="PATH", help="live mode: SQLite inventory (default "
                   "~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("--no-db", action="store_true", help="live mode: do not record this run in the inventory")
    p.add_argument("-q", "--quiet", action="store_true", help="live mode: no terminal report")
    from hostprint.commands.sharding import add_shard_flags

    add_shard_flags(p)  # live mode: each host in the shard that owns it (probes/shard.py)
    p.set_defaults(func=run)


def add_live_options(p: argparse.ArgumentParser, ports: bool = True) -> None:
    """The live-test options shared by `timing` and `learn`."""
    if ports:
        p.add_argument("-p", dest="ports", metavar="PORTS", help="open TCP port(s) to test, e.g. 80 or 22,80")
    p.add_argument("--tests", default="slf", metavar="slf",
                   help="s = SYN_RCVD, l = LAST_ACK, f = FIN_WAIT1 (default slf)")
    p.add_argument("--cron-timeout", type=float, default=60.0, metavar="S",
                   help="listen at most S seconds per test (default 60, up to 240)")
    p.add_argument("--full", action="store_true",
                   help="listen the whole --cron-timeout even when the verdict is already decided")


def _int(v: str, where: str, col: str) -> int | None:
    v = v.strip()
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        x = float(v)  # "1460.0" from spreadsheets
    except ValueError:
        x = math.nan
    if not x.is_integer():
        raise UsageError(f"{where}: column {col}: not an integer: {v!r}")
    return int(x)


def _float(v: str, where: str, col: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise UsageError(f"{where}: column {col}: not a number: {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise UsageError(f"{where}: column {col}: not a non-negative time: {v!r}")
    return x


def read_observations(path: str | Path, fh: TextIO | None = None) -> list[TimingObservation]:
    """OBS.csv -> observations; a bad cell raises UsageError naming file:line and column."""
    name = str(path)
    try:
        f = fh or open(path, newline="")
    except OSError as e:
        raise UsageError(f"cannot read {name}: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise UsageError(f"{name}:1: empty file, expected a header line") from None
        except csv.Error as e:
            raise UsageError(f"{name}:1: {e}") from None
        cols = [h.strip() for h in header]
        idx = {c: i for i, c in enumerate(cols)}
        for c in REQUIRED:
            if c not in idx:
                raise UsageError(f"{name}:1: missing column {c!r} (have {', '.join(cols)})")
        out: list[TimingObservation] = []
        lineno = 1
        try:
            for row in reader:
                lineno = reader.line_num
                if not row or all(not x.strip() for x in row):
                    continue
                where = f"{name}:{lineno}"

                def cell(c: str) -> str:
                    i = idx.get(c)
                    return row[i].strip() if i is not None and i < len(row) else ""

                n = _int(cell("n_arrivals"), where, "n_arrivals")
                if n is None or n < 0:
                    raise UsageError(f"{where}: column n_arrivals: need a count >= 0, got {cell('n_arrivals')!r}")
                times: list[float] = []
                for j in range(n):
                    c = f"t{j}"
                    if c not in idx:
                        raise UsageError(f"{where}: column {c}: missing (n_arrivals={n}) in the header")
                    v = cell(c)
                    if v == "":
                        raise UsageError(f"{where}: column {c}: empty but n_arrivals={n}")
                    times.append(_float(v, where, c))
                ints = {c: _int(cell(c), where, c) for c in INT_COLUMNS}
                for c in ("df", "rst", "rst_ack", "rst_nonzero"):
                    if ints[c] not in (None, 0, 1):
                        raise UsageError(f"{where}: column {c}: must be 0 or 1, got {cell(c)!r}")
                for c in ("window", "mss", "rst_win"):
                    if (val := ints[c]) is not None and not 0 <= val <= 65535:
                        raise UsageError(f"{where}: column {c}: out of range 0-65535: {cell(c)!r}")
                if (ttl := ints["ttl"]) is not None and not 0 <= ttl <= 255:
                    raise UsageError(f"{where}: column ttl: out of range 0-255: {cell('ttl')!r}")
                opts = cell("options") or None
                if opts is not None and not all(ch in "MNWSTEX" for ch in opts):
                    raise UsageError(f"{where}: column options: letters MNWSTEX only, got {opts!r}")
                test = cell("test") or "syn"
                if test not in TESTS:
                    raise UsageError(f"{where}: column test: one of {', '.join(TESTS)}, got {test!r}")
                rtt = _float(cell("rtt"), where, "rtt") if cell("rtt") else None
                rst = bool(ints["rst"])
                times.sort()
                rst_time = times.pop() if rst and times else None
                out.append(TimingObservation(
                    arrivals=times, rst_time=rst_time, window=ints["window"], ttl=ints["ttl"], df=ints["df"],
                    options=opts, mss=ints["mss"], rst=rst, rst_ack=ints["rst_ack"] or 0,
                    rst_win=ints["rst_win"] or 0, rst_nonzero=ints["rst_nonzero"] or 0, rtt=rtt, test=test,
                    obs_id=cell("obs_id")))
        except csv.Error as e:
            raise UsageError(f"{name}:{lineno}: {e}") from None
    return out


def classify_file(obs_csv: str, db_spec: str, mapping: str | None, out: TextIO, top: int = 5) -> int:
    obs = read_observations(obs_csv)
    clf = TimingClassifier(resolve_timing_db(db_spec, mapping))
    have = [o for o in obs if len(o.times())]
    verdicts = {id(o): v for o, v in zip(have, clf.classify_many(have))} if have else {}
    for o in obs:
        v = verdicts.get(id(o))
        rec: VerdictDict
        if v is None:
            rec = {"obs_id": o.obs_id, "outcome": "no-response", "class": None, "label": None,
                   "confidence": None, "alternatives": []}
        else:
            rec = v.to_dict()
            rec["alternatives"] = rec["alternatives"][:top]
        out.write(json.dumps(rec) + "\n")
    return len(obs)


def live_setup(args: argparse.Namespace) -> tuple[list[str], list[int], list[str], float]:
    """Validate targets, ports, tests and timeout before anything is sent."""
    from hostprint.commands.scan import _named_targets
    from hostprint.errors import NeedsRoot, have_raw_sockets
    from hostprint.ports import parse_ports
    from hostprint.probes.timing import check_timeout, parse_tests

    tests = parse_tests(args.tests)
    timeout = check_timeout(args.cron_timeout)
    if not args.ports:
        raise UsageError("timing tests need an open TCP port: -p PORT")
    ports = parse_ports(args.ports)["tcp"]
    if not ports:
        raise UsageError(f"bad -p {args.ports!r}: no TCP port")
    if len(ports) > 16:
        raise UsageError(f"-p {args.ports}: at most 16 ports per target (each keeps a connection open)")
    targets, _ = _named_targets(argparse.Namespace(targets=args.targets, input_list=None, exclude=[], excludefile=None))
    if not have_raw_sockets():
        raise NeedsRoot("timing tests send crafted TCP segments")
    return targets, ports, tests, timeout


def run_live(args: argparse.Namespace) -> int:
    """The timing technique (probes/timing.py) on the given ports of every target, through the
    runner and the run's outputs as `scan` does: outputs and the inventory checked before the
    first packet, each host's report as it finishes; a stop (Ctrl-C, SIGTERM) writes the tests as
    far as they got, marked incomplete. The technique's record gives each host its ports (what the
    tests saw), status and the timing evidence; the verdict is taken over it."""
    import time

    from hostprint import model
    from hostprint.commands.args import timing_db_files
    from hostprint.commands.measure import measure
    from hostprint.commands.scan import _outputs
    from hostprint.commands.sharding import owned_hosts, shard_spec
    from hostprint.engine.rate import template
    from hostprint.probes import runner
    from hostprint.probes.base import Session
    from hostprint.probes.options import ScanOptions
    from hostprint.probes.timing import TimingTechnique
    from hostprint.report import RunOutputs, is_stdout
    from hostprint.report.terminal import ScanProgress

    shard_spec(args)  # a bad --shards/--shard/--seed is said before anything else
    every, ports, tests, timeout = live_setup(args)
    targets, json_extra = owned_hosts(args, every, {"tcp": ports})
    outs = _outputs(args)
    timing_db_files(args.timing_db, args.timing_db_mapping)
    opts = ScanOptions(timing=template("3"), cron_os=args.tests, cron_timeout=timeout, timing_db=args.timing_db,
                       timing_db_mapping=args.timing_db_mapping, timing_ports={a: ports for a in targets},
                       timing_full=args.full)
    tech = TimingTechnique(opts)  # the DB is loaded (and checked) before anything is sent
    outputs = RunOutputs(oJ=outs["oJ"], oX=outs["oX"], oG=outs["oG"], oN=outs["oN"], db=args.db,
                         record=not args.no_db, json_extra=json_extra)
    outputs.check()  # every file and the inventory, before the first packet
    run = model.ScanRun(args=["hostprint", *sys.argv[1:]], scan_types=["timing"], ports_scanned={"tcp": ports})
    if json_extra:
        run.stats["shard"] = json_extra["shard"]
    if not targets:
        print(f"hostprint: shard {args.shard} owns none of the {len(set(every))} target(s) "
              f"(more shards than targets); nothing to test", file=sys.stderr)
    outputs.start(run)
    show = not args.quiet and not any(is_stdout(o) for o in outs.values())
    started = time.time()

    def host_done(h: model.HostResult) -> None:
        h.started, h.finished = started, time.time()
        outputs.host_done(h)
        if show:
            print(f"Timing report for {h.address}")
            for line in h.os.timing.lines if h.os.timing else []:
                print(line)

    state = runner.RunState()
    session = Session(opts.timing)

    async def go() -> list[model.HostResult]:  # every target at once: the protocol sets the pace
        return await runner.run([tech], targets, session, host_done=host_done, state=state,
                                group_size=max(1, len(targets)))

    run.hosts = measure(go, run=run, session=session, state=state, outputs=outputs,
                        progress=ScanProgress(None, windows={"timing": timeout}))  # the listen window ticks
    run.stats.update(session.stats)
    run.finished = time.time()
    outputs.finish(run)
    return 0


def run(args: argparse.Namespace) -> int:
    what = args.what
    if what[0] != "classify":
        args.targets = what
        return run_live(args)
    if len(what) != 2:
        raise UsageError("timing classify: expected exactly one OBS.csv")
    if not 0 <= args.top <= 1000:
        raise UsageError(f"bad --top {args.top}: use 0-1000 alternatives")
    from hostprint.commands.args import text_file, timing_db_files

    text_file(what[1], "timing classify")
    timing_db_files(args.timing_db, args.timing_db_mapping)
    dest = args.oJ or "-"
    from hostprint.report import check_output_paths, is_stdout

    if is_stdout(dest):
        classify_file(what[1], args.timing_db, args.timing_db_mapping, sys.stdout, args.top)
        return 0
    check_output_paths(oJ=dest)
    import io

    buf = io.StringIO()  # classified in full before the file is opened: a bad row leaves no file
    classify_file(what[1], args.timing_db, args.timing_db_mapping, buf, args.top)
    from hostprint.report import _write_text

    _write_text(dest, buf.getvalue(), "JSON lines")
    return 0
