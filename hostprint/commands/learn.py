"""`hostprint learn TARGET -p PORT --label "…"`: measure a known host and append its signature.

This is how Cron-OS grew its database: point the tool at a stack you can name, record its
schedules, keep them. The tests run `--repeat` times at once (different source ports, so one run
costs the time of one) and every gap is stored as the range seen, widened by the timer rounding a
stack shows from one run to the next (Linux >= 4.8's wheel: up to 12.5 %, reference notes §5.5)
plus 20 ms, so the next measurement of the same stack falls inside. By default the tests listen for
the whole `--cron-timeout`: the point is to record a schedule the DB does not know yet, and the
early stop only knows the DB's classes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hostprint.commands.timing import add_live_options, live_setup
from hostprint.errors import UsageError
from hostprint.signatures.timing_db import (
    FloatArray,
    Header,
    Schedule,
    TimingClass,
    format_class,
    normalise_ttl,
    read_cronos_db,
    rst_code,
    rst_win3,
)

if TYPE_CHECKING:
    from hostprint.match.timing_report import TestResult

DEFAULT_OUT = Path.home() / ".local" / "share" / "hostprint" / "timing-user.txt"
REL_SLACK, ABS_SLACK = 0.13, 0.02


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("learn", help="measure a known host's timing and add it to your timing DB",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs=1, metavar="TARGET")
    add_live_options(p)
    p.add_argument("--label", required=True, help='what the host runs, e.g. "FreeBSD 14.1 (tuned)"')
    p.add_argument("--family", help="OS family for the Class line (default: first word of the label)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="measure N times at once (default 3)")
    p.add_argument("--early-stop", action="store_true", help="stop each test when the DB says it is over")
    p.add_argument("--timing-db-out", metavar="FILE", default=str(DEFAULT_OUT),
                   help=f"DB file to append to (default {DEFAULT_OUT}); use it with --timing-db FILE")
    p.set_defaults(func=run)


def _ranges(samples: list[list[float]]) -> tuple[FloatArray, FloatArray]:
    m = np.asarray(samples, dtype=float)
    lo = np.maximum(m.min(axis=0) * (1 - REL_SLACK) - ABS_SLACK, 0.0)
    hi = m.max(axis=0) * (1 + REL_SLACK) + ABS_SLACK
    return lo, hi


def build_class(label: str, family: str | None, results: list[TestResult], target: str, port: int,
                existing: set[str]) -> TimingClass:
    """One TimingClass from repeated TestResults of one host (UsageError when nothing was seen)."""
    res = [r for r in results if r.status == "ok" and r.arrivals]
    if not res:
        raise UsageError(f"learn {target}:{port}: no test got an answer (is the port open?)")
    cid = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "learned"
    base, i = cid, 2
    while cid in existing:
        cid, i = f"{base}-{i}", i + 1
    schedules: list[Schedule] = []
    notes: list[str] = []
    for test in ("syn", "lastack", "finwait"):
        rs = [r for r in res if r.test == test]
        if not rs:
            continue
        # keep the runs with the longest schedule (then the most common RST outcome): a packet
        # lost in one run must not become part of the signature, and the classifier can explain
        # a shorter observation by loss but never a longer one than the class sends
        shapes = [(len(r.arrivals), r.rst is not None) for r in rs]
        longest = max(n for n, _ in shapes)
        shape = max((sh for sh in set(shapes) if sh[0] == longest), key=shapes.count)
        rs = [r for r, s in zip(rs, shapes) if s == shape]
        gaps: list[list[float]] = [list(np.diff(r.arrivals)) + ([r.rst - r.arrivals[-1]] if r.rst is not None else [])
                                   for r in rs]
        rtts = [r.rtt_us for r in rs if r.rtt_us is not None]
        connect = float(np.median(rtts)) if rtts and test != "syn" else None
        if gaps and gaps[0]:
            lo, hi = _ranges(gaps)
        else:
            lo = hi = np.zeros(0)
        schedules.append(Schedule.from_gaps(test, lo, hi, has_rst=shape[1], time_s=round(max(r.listened for r in rs)),
                                            connect_us=connect))
        notes.append(f"{test} {len(rs)}/{len(shapes)} runs")
    first = next((r for r in res if r.test == "syn"), res[0])
    header: Header = {}
    if first.window is not None:
        header = {"window": {first.window: 1.0}, "ttl": {normalise_ttl(first.ttl or 64): 1.0}}
        if first.df is not None:  # set with the window (the same SYN-ACK)
            header["df"] = {first.df: 1.0}
        header["options"] = {first.options or "X": 1.0}
        if first.mss is not None:
            header["mss"] = {first.mss: 1.0}
        syn = [r for r in res if r.test == "syn"]
        if syn:
            s = syn[0]
            header["rst"] = {(rst_code(1, s.rst_ack, rst_win3(s.rst_win, s.window or -1), s.rst_nonzero)
                              if s.rst is not None else 0): 1.0}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    source = (f"measured here by `hostprint learn {target} -p {port}` on {when} ({', '.join(notes)}); "
              f"gap ranges = seen range widened by {REL_SLACK:.0%} + {ABS_SLACK * 1000:.0f} ms")
    return TimingClass(id=cid, label=label, family=family or label.split()[0], header=header,
                       schedules=schedules, source=source)


def run(args: argparse.Namespace) -> int:
    from hostprint.probes.timing import TimingProber
    from hostprint.signatures.timing_db import resolve_timing_db

    if not args.label.strip() or "\n" in args.label:
        raise UsageError(f"bad --label {args.label!r}: one non-empty line")
    if not 1 <= args.repeat <= 10:
        raise UsageError(f"bad --repeat {args.repeat}: use 1-10")
    from hostprint.commands.args import text_file
    from hostprint.report import check_output_paths

    out = Path(args.timing_db_out)
    existing: set[str] = set()
    targets, ports, tests, timeout = live_setup(args)
    # the file we append to is checked before measuring: a measurement is never thrown away
    if out.is_dir():
        raise UsageError(f"--timing-db-out {out}: is a directory")
    if out.exists() and out.stat().st_size:
        text_file(str(out), "--timing-db-out")
        existing = {c.id for c in read_cronos_db(out).classes}  # a broken file fails before probing
    elif not out.parent.exists():
        if out != DEFAULT_OUT:
            raise UsageError(f"--timing-db-out {out}: directory {out.parent} does not exist")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--timing-db-out {out}: {e.strerror}") from None
    check_output_paths(**{"--timing-db-out": str(out)})
    if len(targets) != 1 or len(ports) != 1:
        raise UsageError("learn measures one target and one port (-p PORT)")
    db = resolve_timing_db("hostprint")  # only for the early stop
    prober = TimingProber(db, timeout=timeout, full=not args.early_stop, per_target=3 * args.repeat)
    jobs = [(targets[0], ports[0], t) for _ in range(args.repeat) for t in tests]
    try:
        results = asyncio.run(prober.run(jobs))
    except (KeyboardInterrupt, SystemExit) as e:
        raise _stopped(e, prober.partial(), out) from None
    cls = build_class(args.label.strip(), args.family, results, targets[0], ports[0], existing)
    block = format_class(cls)
    prev = out.read_text() if out.exists() else ""
    text = prev + ("\n" if prev and not prev.endswith("\n\n") else "") + block
    read_cronos_db(out, text=text)  # what we append must read back
    try:
        with out.open("a") as fh:
            fh.write(text[len(prev):])
    except OSError as e:
        raise UsageError(f"--timing-db-out {out}: {e.strerror}") from None
    sys.stdout.write("".join(ln.rstrip() + "\n" for ln in block.splitlines()))  # plain: no trailing blanks
    print(f"# appended class {cls.id!r} to {out}", file=sys.stderr)
    return 0


def _stopped(exc: BaseException, results: list[TestResult], out: Path) -> BaseException:
    """Ctrl-C / SIGTERM while measuring: a class from schedules cut short would describe the cut,
    not the stack, so nothing is appended; what was measured is kept beside the DB as JSON lines
    (one test per line, as `timing -oJ` writes them) and the one line says where."""
    import json

    from hostprint.engine.signals import deferred
    from hostprint.report import Interrupted, signal_of

    signum = signal_of(exc)
    if not signum:
        return exc
    seen = [r for r in results if r.arrivals or r.rst is not None]
    msg = f"interrupted: nothing appended to {out} (the schedules were cut short)"
    if seen:
        keep = out.with_name(f"{out.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
        try:
            with deferred():  # a second Ctrl-C waits until the file is written
                keep.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in results))
            msg += f"; the {len(seen)} test(s) measured so far are in {keep}"
        except OSError as e:
            msg += f"; the measurement could not be saved ({e.strerror})"
    return Interrupted(msg, signum)
