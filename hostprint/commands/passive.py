"""`hostprint passive`: identify hosts from traffic they send anyway (p0f's method), without sending.

  hostprint passive -r FILE.pcap[ng]|DIR [-oJ FILE] [--sigdb builtin|none|PATH] [--p0f-db [PATH]]
  hostprint passive -i IFACE [-c COUNT] [--timeout SECONDS] [-oJ FILE] ...

Output: JSON lines (`-oJ`), one record per observation (SYN, SYN+ACK, HTTP request/response) and
then one host record per address in the shape `scan` writes (plus `"type": "host"`): `os.passive`
holds what the host's own traffic showed and `os.matches` the combined verdict; a table of hosts
on the terminal; and the run in the SQLite inventory (`hostprint history` lists it; one
observation per host keeps the raw summary). `--db`/`--no-db` choose the inventory as in `scan`.

Why `-i` uses our own AF_PACKET ring and a kernel BPF filter (IPv4/IPv6 TCP with SYN or PSH, no
fragments): on a busy link only a few percent of frames can carry a fingerprint, so the kernel
drops the rest before they are copied to us.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

from hostprint.commands.args import positive
from hostprint.errors import UsageError

MAX_OBSERVATION_HOSTS = 2000  # hosts whose summary is also stored as an inventory observation


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("passive", help="passive OS fingerprinting from a capture file or a live interface",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-r", dest="read", metavar="FILE|DIR", help="pcap or pcapng file, or a directory of them")
    src.add_argument("-i", dest="iface", metavar="IFACE", help="capture live on this interface (root)")
    p.add_argument("-oJ", metavar="FILE", help="JSON lines: observations, then host summaries ('-' = stdout)")
    p.add_argument("--sigdb", default="builtin", metavar="builtin|none|PATH",
                   help="hostprint's own signature file (default: the built-in passive.txt)")
    p.add_argument("--p0f-db", nargs="?", const="", default=None, metavar="PATH",
                   help="also read the user's p0f v3 p0f.fp (default path /etc/p0f/p0f.fp)")
    p.add_argument("-c", dest="count", metavar="COUNT", help="live: stop after COUNT observations")
    p.add_argument("--timeout", metavar="SECONDS", help="live: stop after this many seconds")
    p.add_argument("--db", metavar="PATH", help="SQLite inventory (default ~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("--no-db", action="store_true", help="do not record this run in the inventory")
    p.add_argument("--quiet", action="store_true", help="no host table on the terminal")
    p.add_argument("--no-detect", action="store_true",
                   help="no probe detection (scans, sweeps, OS and application fingerprinting of this network)")
    p.add_argument("--probe-rules", metavar="PATH",
                   help="probe detection rules (default: the built-in signatures/knowledge/probes.txt)")
    p.add_argument("-v", dest="verbose", action="count", default=0,
                   help="print each observation as it is made (always on with -i unless -oJ -)")
    p.set_defaults(func=run)


def event_line(o: dict[str, Any]) -> str:
    """One observation as a line, as p0f streams them: who, which packet, what it says."""
    os_d = o.get("os")
    what = f"{os_d['name']} ({round(100 * float(os_d.get('confidence') or 0))}%)" if os_d else "unknown"
    dist = o.get("distance")
    hops = f", {dist} hop{'s' if dist != 1 else ''}" if isinstance(dist, int) and dist >= 0 else ""
    return f"{o.get('address')}:{o.get('port')} -> {o.get('peer')}:{o.get('peer_port')} ({o.get('kind')}): {what}{hops}"


def probe_line(ev: Any) -> str:
    """One probe detection as a terminal line: who, what, which tool, how much."""
    what = {"new": "PROBE", "tool": "PROBE", "final": "PROBE"}[ev.update]
    parts = [f"{what} {ev.source} {ev.kind} ({ev.method}): {ev.detail}; tool {ev.tool}"]
    if ev.hosts or ev.ports:
        parts.append(f"{ev.packets} probes, {ev.hosts} host{'s' if ev.hosts != 1 else ''}, "
                     f"{ev.ports} port{'s' if ev.ports != 1 else ''}")
    if ev.rate:
        parts.append(f"{ev.rate:g}/s")
    if ev.evidence and ev.tool != "unknown":
        e = next((x for x in ev.evidence if x.tool == ev.tool), ev.evidence[0])
        parts.append(f"evidence: {e.fact} ({e.packets} packets)")
    if ev.update == "tool":
        parts.append("tool now known")
    return "; ".join(parts)


class _LiveStatus:
    """passive -i on a terminal: packets, hosts and observations so far, redrawn on stderr."""

    def __init__(self, analyzer: Any):
        import threading

        self.an = analyzer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.monotonic()

    def line(self) -> str:
        st = self.an.stats
        return (f"{time.monotonic() - self.t0:5.0f}s  {st.get('packets', 0)} packets, {len(self.an.hosts)} hosts, "
                f"{self.an.observations} observations")

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            sys.stderr.write("\r\x1b[K" + self.line())
            sys.stderr.flush()

    def __enter__(self) -> _LiveStatus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=1)
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def capture_files(path: str) -> list[Path]:
    """A file, or every pcap/pcapng file in a directory (by magic number, sorted by name). A named
    file that is no capture at all is refused before anything is read."""
    from hostprint.engine.pcapfile import CaptureError, capture_kind

    p = Path(path)
    if not p.exists():
        raise UsageError(f"-r {path}: no such file or directory")
    if not p.is_dir():
        capture_kind(p)  # CaptureError (one line) for a file that is not a capture
        return [p]
    out = []
    try:
        entries = sorted(p.iterdir())
    except OSError as e:
        raise UsageError(f"-r {path}: {e.strerror or e}") from None
    for f in entries:
        if not f.is_file():
            continue
        try:
            capture_kind(f)
        except CaptureError:
            continue
        out.append(f)
    if not out:
        raise UsageError(f"-r {path}: directory holds no pcap or pcapng files")
    return out


def check_iface(iface: str) -> None:
    """Root and an existing interface, checked before capturing (one line, exit 2)."""
    import socket

    from hostprint.errors import NeedsRoot, have_raw_sockets

    if not have_raw_sockets():
        raise NeedsRoot(f"live capture on {iface}")
    try:
        socket.if_nametoindex(iface)
    except OSError:
        raise UsageError(f"-i {iface}: no such interface") from None


def run(args: argparse.Namespace) -> int:
    import os

    # passive does no linear algebra: numpy's BLAS need not start a thread per core at import
    # (measured: 0.03-0.06 s of CPU at start-up on this 2-core machine)
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from hostprint.engine.rate import template
    from hostprint.engine.signals import deferred
    from hostprint.match.passive import PassiveMatcher
    from hostprint.model import ScanRun
    from hostprint.probes.base import Session
    from hostprint.probes.passive import PassiveTechnique
    from hostprint.report import Interrupted, RunOutputs, check_output_paths, is_stdout, signal_name, signal_of
    from hostprint.report.jsonl import JsonlWriter
    from hostprint.signatures.passive_db import resolve_db

    count = positive(args.count, "-c")
    timeout = positive(args.timeout, "--timeout", float)
    if args.read and (count or timeout):
        raise UsageError("-c and --timeout apply to live capture (-i), not to -r")
    check_output_paths(oJ=args.oJ)
    files = capture_files(args.read) if args.read else []
    if args.iface:
        check_iface(args.iface)
    db = resolve_db(args.sigdb, args.p0f_db)
    outputs = RunOutputs(db=args.db, record=not args.no_db)
    outputs.check()  # the inventory can take the run, before anything is read
    sink = JsonlWriter("-" if is_stdout(args.oJ) else args.oJ, buffered=True) if args.oJ is not None else None
    tech = PassiveTechnique(PassiveMatcher(db), files=files, iface=args.iface, count=count, timeout=timeout,
                            write=sink.write_line if sink is not None else None, summarise=False)
    an = tech.analyzer
    if sink is not None:
        an.write_bytes = sink.write_bytes
    events: list[Any] = []
    if not args.no_detect:
        from hostprint.match.probedetect import detector
        from hostprint.report.jsonl import dumps_record

        show_events = not args.quiet and not is_stdout(args.oJ)

        def on_event(ev: Any) -> None:  # as it happens: the terminal and -oJ
            if ev.update == "final":
                events.append(ev)
            elif show_events:
                print(probe_line(ev), flush=True)
            if sink is not None:
                sink.write_line(dumps_record(ev.to_dict()) + "\n")

        an.detector = detector(on_event, args.probe_rules)
    if (args.iface or args.verbose) and not args.quiet and args.oJ != "-":
        clear = "\r\x1b[K" if args.iface and sys.stderr.isatty() and sys.stdout.isatty() else ""

        def show(o: dict[str, Any]) -> None:  # events as they happen, as p0f streams them
            if clear:
                sys.stderr.write(clear)
            print(event_line(o), flush=True)

        an.emit = show
    run_ = ScanRun(args=["hostprint", *sys.argv[1:]] if sys.argv[1:2] == ["passive"] else ["hostprint", "passive"],
                   scan_types=["passive"])
    spool = _HostSpool(run_, tech, sink)
    t0 = time.perf_counter()
    # The analyzer's tables hold no reference cycles (flows are lists of numbers, hosts slotted
    # records of dicts/sets of strings), so refcounting frees everything; the cyclic collector
    # would only rescan the ever-growing tables: measured 2.3x slower on a 200k-new-host capture.
    gc.disable()
    stopped: BaseException | None = None
    import contextlib

    live = _LiveStatus(an) if args.iface and sys.stderr.isatty() else contextlib.nullcontext()
    try:
        with live:
            _drive(tech.probe([], Session(template("3"))))
    except BaseException as e:  # noqa: BLE001 - Ctrl-C, SIGTERM or a bug: what was read is still saved
        stopped = e
    problems: list[str] = []
    try:
        with deferred():  # a second Ctrl-C waits until what was read is saved
            elapsed = time.perf_counter() - t0
            for state in an.drain():  # one host at a time: never every summary at once
                spool.add(state)
            run_.finished = time.time()
            if an.detector is not None:
                run_.stats["probe_detection"] = {**an.detector.stats, "detections": len(events)}
            run_.stats = {**run_.stats, **an.stats, "observations": an.observations, "seconds": round(elapsed, 3),
                          "signature_sources": db.sources, "files": [str(f) for f in files],
                          "interface": args.iface, "hosts": spool.count}
            if tech.errors:
                run_.stats["damaged_files"] = [str(e) for e in tech.errors]
            if stopped is not None:
                run_.stats["interrupted"] = {"by": signal_name(stopped), "phase": "passive", "incomplete": []}
            if sink is not None:
                try:
                    sink.close()
                except UsageError as e:
                    spool.problems.append(str(e))
            problems.extend(spool.problems)
            if an.stats["packets"] > 0 or stopped is None:
                try:
                    outputs.finish(run_, observations=spool.observations, hosts=spool.hosts)
                except UsageError as e:
                    problems.append(str(e))
            if not args.quiet and not is_stdout(args.oJ):
                _print_table(spool.table, an.stats, elapsed, spool.count)
                if events:
                    print(f"{len(events)} probing detection(s):")
                    for ev in events:
                        print("  " + probe_line(ev).removeprefix("PROBE "))
            spool.close()
            gc.enable()
    except (KeyboardInterrupt, SystemExit) as e:  # a signal held during the save, delivered now
        stopped = stopped or e
    if stopped is not None:
        sig = signal_of(stopped)
        if sig:
            raise Interrupted(f"interrupted ({signal_name(stopped)}): {spool.count} host(s) from "
                              f"{an.stats['packets']} packets saved{'; ' + '; '.join(problems) if problems else ''}",
                              sig)
        raise stopped
    if tech.errors:
        problems.insert(0, _damage_line(tech.errors, len(files)))
    if problems:
        raise UsageError("; ".join(problems))
    return 0


def _drive(coro: Any) -> Any:
    """Run a coroutine that awaits nothing but bare yields (PassiveTechnique.probe) to its end,
    without an event loop: asyncio's import is ~0.02 s of a passive run's start-up, and reading is
    synchronous anyway. A Ctrl-C raises KeyboardInterrupt here, as asyncio.run would."""
    try:
        while True:
            coro.send(None)
    except StopIteration as e:
        return e.value


class _HostSpool:
    """The hosts of a passive run, one at a time as the analyzer hands them out (evicted from a full
    table, or drained at the end): each becomes its HostResult, goes to -oJ at once and to an
    unlinked temporary file that the inventory (or the recovery file) reads back in one pass, so
    memory holds one host, not every host. Keeps the first TABLE_HOSTS summaries for the terminal
    and the first MAX_OBSERVATION_HOSTS as inventory observations."""

    TABLE_HOSTS = 200

    def __init__(self, run: Any, tech: Any, sink: Any):
        import tempfile

        self.run, self.tech, self.sink = run, tech, sink
        self.count = 0
        self.table: list[dict[str, Any]] = []
        self.observations: list[tuple[str, str, Any]] = []
        self.problems: list[str] = []
        self.memory: list[str] | None = None  # lines, when no temporary file could be written
        try:
            self.fp: Any = tempfile.TemporaryFile("w+", encoding="utf-8")
        except OSError:
            self.fp, self.memory = None, []

    def add(self, state: Any) -> None:
        from hostprint.match import verdict
        from hostprint.model import HostResult
        from hostprint.report.jsonl import dumps_record

        s = state.summary()
        h = HostResult(s["address"])
        self.tech.record(h, s)
        verdict.apply(h.os)
        if self.sink is not None:
            try:
                self.sink.write_host(self.run, h, type="host")
            except UsageError as e:
                self.problems.append(str(e))
                self.sink = None
        d = h.to_dict()
        d["started"], d["finished"] = h.started, h.finished
        line = dumps_record(d) + "\n"
        if self.fp is not None:
            try:
                self.fp.write(line)
            except OSError:
                self.fp.close()
                self.fp, self.memory = None, list(self._lines())
        if self.memory is not None:
            self.memory.append(line)
        if len(self.table) < self.TABLE_HOSTS:
            self.table.append(s)
        if len(self.observations) < MAX_OBSERVATION_HOSTS:
            self.observations.append((s["address"], "passive", s))
        self.count += 1

    def _lines(self) -> Any:
        if self.fp is not None:
            self.fp.flush()
            self.fp.seek(0)
            yield from self.fp
            self.fp.seek(0, 2)
        elif self.memory is not None:
            yield from self.memory

    def hosts(self) -> Any:
        """A fresh pass over every host written so far."""
        import json

        from hostprint.report.inventory import host_from_dict

        for line in self._lines():
            yield host_from_dict(json.loads(line))

    def close(self) -> None:
        if self.fp is not None:
            self.fp.close()


def _damage_line(errors: list[Exception], nfiles: int) -> str:
    """One line for every damaged capture (the packets before each damage were used)."""
    if nfiles == 1:
        return f"{errors[0]} (the packets before the damage were read and saved)"
    return (f"{len(errors)} of {nfiles} capture files are damaged; the packets before each damage were read, "
            f"the other files in full: " + "; ".join(str(e) for e in errors))


def _print_table(summaries: list[dict[str, Any]], stats: dict[str, int], elapsed: float,
                 total: int | None = None) -> None:
    out = sys.stdout
    total = len(summaries) if total is None else total
    rate = stats["packets"] / elapsed if elapsed > 0 else 0.0
    ring = (f"; kernel ring: {stats['ring_packets']} frames, {stats['ring_drops']} dropped"
            if "ring_drops" in stats else "")
    print(f"{stats['packets']} packets, {stats['syn']} SYN, {stats['synack']} SYN+ACK, {stats['http']} HTTP "
          f"in {elapsed:.2f}s ({rate:,.0f} packets/s); {total} hosts{ring}", file=out)
    for s in summaries[:200]:
        osd = s["os"]
        name = f"{osd['name']} ({round(100 * float(osd['confidence'] or 0))}%)" if osd else "unknown"
        extra = []
        if s["distance"] is not None:
            extra.append(f"{s['distance']} hop{'s' if s['distance'] != 1 else ''}")
        if s["link"]:
            extra.append(s["link"])
        if s["uptime"]:
            extra.append(f"up {s['uptime']['text']} ({s['uptime']['clock_hz']:g} Hz clock)")
        if s["http"]:
            apps = list(s["http"]["apps"]) or s["http"]["user_agents"][:1] or s["http"]["servers"][:1]
            if apps:
                extra.append("http: " + ", ".join(apps[:2]))
        if s["nat"]["suspected"]:
            extra.append("NAT? " + "; ".join(s["nat"]["reasons"]))
        if s["dishonest"]:
            extra.append("fake: " + s["dishonest"][0])
        # columns only on a terminal; a pipe gets no padding
        cols = f"  {s['address']:<16} {name:<44} " if out.isatty() else f"  {s['address']} {name} "
        print((cols + "  ".join(extra)).rstrip(), file=out)
    if total > len(summaries[:200]):
        print(f"  ... {total - len(summaries[:200])} more hosts (see -oJ)", file=out)
