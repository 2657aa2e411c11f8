"""`hostprint cluster scan --scheduler tcp://HOST:8786 [scan flags]`: one scan run by Dask workers.

The job is split into shards (`--shards N`, default twice the workers; `--seed S`, default a
random one, recorded), each a Dask task: on its worker, `hostprint scan … --shards N --shard i
--seed S -oJ -` in the worker's own network namespace/machine (workers are started with Dask's own
CLI, `dask worker tcp://HOST:8786`, as root or with CAP_NET_RAW). Each host is streamed back as its
shard's scan finishes it (Dask's event topics: the task logs every -oJ line on its shard's topic, the
client subscribes) and goes into the inventory at its place in the job at once (`history` shows the
run "unfinished" meanwhile). A worker that dies mid-shard loses its task; Dask's scheduler runs it
again elsewhere. Every (shard, host) part is taken once, whichever copy arrives first (the streamed
line, the re-run's line, the task's result), so no host is counted twice.

Everything is checked before any task is submitted: the scan flags (the same parser as `scan`),
every output (-oJ/-oX/-oG/-oN/-oA, written from the merged hosts at the end), the inventory, the
scheduler (reachable, at least one worker).

`--resume RUN` continues a cluster run recorded in the inventory: the parts it recorded (an
observation per (shard, host), written with the host) are not probed again, shards it finished are
not submitted. Ctrl-C (SIGTERM, SIGHUP) cancels the tasks (their scans are stopped through a Dask
Event), writes every output with the hosts so far and marks the run record interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from hostprint.errors import UsageError

#: flags the cluster command owns (given to the scan part they would fight the shards' own)
_OWNED = ("-oJ", "-oX", "-oG", "-oN", "-oA", "--db", "--no-db", "--shards", "--shard", "--seed", "--resume",
          "--shard-skip")
_OUTPUTS = ("oJ", "oX", "oG", "oN", "oA")
#: observation kinds of a cluster run: a (shard, host) part recorded; a shard finished
PART, SHARD_DONE = "cluster-part", "cluster-shard"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cluster", help="run a scan on Dask workers (several machines)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="cluster_command", metavar="COMMAND")
    s = csub.add_parser("scan", help="scan with the workers of a Dask scheduler: [scan flags] as for hostprint scan",
                        allow_abbrev=False)
    s.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="the Dask scheduler (required; with --resume, the recorded one by default)")
    s.add_argument("--shards", type=int, metavar="N", help="shards (tasks) of the job (default: twice the workers)")
    s.add_argument("--seed", metavar="S", help="seed of the target x port permutation (default: random, recorded)")
    s.add_argument("-oJ", metavar="FILE", help="the merged hosts as JSON lines ('-' = stdout)")
    s.add_argument("-oX", metavar="FILE", help="the merged hosts as nmap XML")
    s.add_argument("-oG", metavar="FILE", help="the merged hosts as nmap grepable output")
    s.add_argument("-oN", metavar="FILE", help="the merged hosts as nmap normal output")
    s.add_argument("-oA", metavar="BASENAME", help="-oJ/-oX/-oG/-oN to BASENAME.{jsonl,xml,gnmap,nmap}")
    s.add_argument("--db", metavar="PATH|URL", help="inventory: SQLite file or postgresql://… (default: $HOSTPRINT_DB)")
    s.add_argument("--no-db", action="store_true", help="record nothing in the inventory")
    s.add_argument("--resume", metavar="RUN", help="continue an interrupted cluster run of the inventory (a run id, "
                   "last, -N): what it recorded is not probed again")
    s.add_argument("--connect-timeout", type=float, default=15.0, metavar="S",
                   help="seconds to reach the scheduler and see a worker (default 15)")
    s.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="the live table of Dask task states (auto: when stderr is a terminal; else plain lines)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=run, scan_argv=[])
    p.set_defaults(func=lambda a: (_ for _ in ()).throw(UsageError("cluster: give a command (cluster scan --scheduler tcp://HOST:PORT ...)")))


@dataclass
class ShardResult:
    """What a worker sends back for one shard."""

    index: int
    worker: str
    text: str  # the shard's -oJ lines
    cpu_s: float  # user + system CPU of the shard's hostprint process
    wall_s: float
    returncode: int
    stderr: str = ""
    skipped: int = 0  # hosts an earlier attempt of this task (on a worker that died) streamed whole


def _die_with_parent() -> None:
    """In the shard's process: SIGTERM when the worker that started it dies (a killed worker must
    not leave its scan running)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_shard(argv: list[str], count: int, index: int, seed: int, topic: str | None = None,
              stop: str | None = None, skip: list[str] | None = None) -> ShardResult:
    """The Dask task: one shard of the job, as a hostprint process on this worker. Each -oJ line
    (a finished host) is logged on the shard's topic (`topic`-i) as it comes; the Dask Event
    `stop` set by the client (Ctrl-C) stops the scan; `skip`: hosts a resumed run already has."""
    import subprocess
    import tempfile
    import threading

    wk: Any = None
    try:
        from distributed import get_worker

        wk = get_worker()
        worker = wk.address
    except (ImportError, ValueError):
        worker = "local"
    cmd = [sys.executable, "-m", "hostprint", "scan", *argv, "--shards", str(count), "--shard", str(index),
           "--seed", str(seed), "-oJ", "-", "--no-db", "--progress", "never"]
    topic = f"{topic}-{index}" if topic is not None else None  # the scheduler keeps a log per topic
    earlier = _streamed_before(topic, index) if topic is not None and wk is not None else []
    skip = [*(skip or []), *earlier]
    if skip:
        cmd += ["--shard-skip", ",".join(skip)]
    t0 = time.monotonic()
    lines: list[str] = []
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, preexec_fn=_die_with_parent)
        assert p.stdout is not None
        done = threading.Event()
        if stop is not None and wk is not None:
            try:  # made here: the worker's client is found from the task's own thread only
                from distributed import Event
                from distributed.worker import get_client

                ev: Any = Event(stop, client=get_client())
            except Exception:  # noqa: BLE001 - no Event: the worker's own end still stops the scan
                ev = None
            if ev is not None:
                threading.Thread(target=_stop_when_told, args=(ev, p, done), daemon=True).start()
        try:
            for raw in p.stdout:  # -oJ - writes each host as its group finishes
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                if topic is not None and wk is not None and line.strip():
                    wk.log_event(topic, {"shard": index, "worker": worker, "line": line})
        finally:
            done.set()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    res = ShardResult(index, worker, "".join(lines), usage.ru_utime + usage.ru_stime,
                      time.monotonic() - t0, p.returncode, stderr[-4000:], len(earlier))
    if p.returncode != 0:
        raise RuntimeError(f"shard {index} on {worker}: hostprint exited {p.returncode}: "
                           f"{(stderr.strip().splitlines() or [''])[-1]}")
    return res


def _streamed_before(topic: str, index: int) -> list[str]:
    """In a re-run task (its first worker died): the hosts of this shard an earlier attempt already
    streamed whole, from the scheduler's log of the shard's topic (its last
    `distributed.admin.low-level-log-length` events, 1000 by default: beyond, the older hosts are
    probed again and deduped by the client); the re-run skips them (the client
    has them)."""
    try:
        from distributed.worker import get_client

        events = get_client().get_events(topic)
    except Exception:  # noqa: BLE001 - no log to read: the re-run probes everything, the client dedupes
        return []
    out: list[str] = []
    for _, msg in events:
        if not isinstance(msg, dict) or msg.get("shard") != index:
            continue
        try:
            rec = json.loads(str(msg.get("line", "")))
        except ValueError:
            continue
        if isinstance(rec, dict) and not rec.get("incomplete") and isinstance(rec.get("address"), str):
            out.append(rec["address"])
    return list(dict.fromkeys(out))


def _stop_when_told(ev: Any, p: Any, done: Any) -> None:
    """In the task: SIGTERM to the shard's scan once the client sets the run's stop Event (a
    cancelled Dask task's thread runs on; its scan must not)."""
    try:
        while not done.is_set():
            if ev.wait(timeout=1):
                if p.poll() is None:
                    p.terminate()
                return
    except Exception:  # noqa: BLE001 - the scheduler went away: the worker's own end stops the scan
        return


@dataclass
class _Job:
    argv: list[str]
    targets: list[str]
    ports: dict[str, list[int]]
    scan_types: list[str]
    count: int = 1
    seed: int = 0
    results: list[ShardResult] = field(default_factory=list)


def _check_scan_part(rest: list[str]) -> _Job:
    """The scan flags, parsed and checked as `hostprint scan` would (one line, exit 2)."""
    from hostprint.commands import scan
    from hostprint.probes.shard import canonical_hosts

    for a in rest:
        if a.split("=", 1)[0] in _OWNED:
            raise UsageError(f"hostprint cluster scan: {a.split('=', 1)[0]} belongs before the scan flags "
                             f"(cluster scan's own -o*, --db, --no-db, --shards, --seed, --resume), not to each "
                             f"shard")
    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]  # one line, exit 2, as the cli's parser
            raise UsageError(message)

    parser = _Parser(prog="hostprint cluster scan")
    scan.register(parser.add_subparsers(dest="command", parser_class=_Parser))
    args = parser.parse_args(scan.normalise_ping(["scan", *rest]))
    if getattr(args, "list_scan", False):
        raise UsageError("hostprint cluster scan: -sL sends nothing to the targets; run it on one machine")
    discovery = bool(getattr(args, "ping_only", False))  # -sn: the shards are sets of hosts
    opts = scan.scan_options(args, discovery_only=discovery)
    if discovery and not opts.ping:
        raise UsageError("host discovery with -Pn has nothing to do")
    from hostprint.probes import registry

    # -A, -g, --ttl, -S … as scan checks them; -e names an interface of each worker's machine, not ours
    scan.apply_habits(argparse.Namespace(**{**vars(args), "iface": None}), opts)
    registry.create(opts, ["discovery"] if discovery else None)  # DBs (--os-db, --sv-db …) load before any task
    targets, _names = scan._named_targets(args)
    return _Job(rest, canonical_hosts(targets), {} if discovery else opts.ports,
                ["ping"] if discovery else opts.scan_kinds)


def _client(address: str, timeout: float):  # -> distributed.Client
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("hostprint cluster needs Dask distributed: pip install '.[cluster]' (hostprint's cluster "
                         "extra)") from None
    if not address.startswith(("tcp://", "tls://", "inproc://")) or ":" not in address.split("://", 1)[1]:
        raise UsageError(f"bad --scheduler '{address}': use tcp://HOST:PORT (dask scheduler's address)")
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {str(e).splitlines()[0] if str(e) else e}") \
            from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        client.close()
        raise UsageError(f"the Dask scheduler at {address} has no worker (start some: dask worker {address})") \
            from None
    return client


# ---------------------------------------------------------------------------- --resume of a cluster run


@dataclass
class _Resumed:
    run: Any  # model.ScanRun, as recorded
    parts: set[tuple[int, str]]
    shards_done: set[int]


def _resume(args: argparse.Namespace) -> tuple[argparse.Namespace, _Resumed]:
    """The recorded cluster command line (its job, shards, seed and outputs), with this command's
    --scheduler, inventory and progress flags, and what the run recorded."""
    from hostprint.report.store import open_inventory

    if args.no_db:
        raise UsageError("--resume RUN reads the run from the inventory: drop --no-db")
    if args.scan_argv or args.shards is not None or args.seed is not None:
        raise UsageError("cluster scan --resume RUN takes the recorded job (scan flags, --shards, --seed) as it was; "
                         "give only --scheduler, --db and outputs")
    try:
        with open_inventory(args.db, create=False) as inv:
            run = inv.load_run(args.resume)
            parts, shards = set(), set()
            for o in inv.observations(run.id, kind=PART):
                if isinstance(o["data"], dict) and isinstance(o["data"].get("shard"), int):
                    parts.add((o["data"]["shard"], o["address"]))
            for o in inv.observations(run.id, kind=SHARD_DONE):
                if isinstance(o["data"], dict) and isinstance(o["data"].get("shard"), int):
                    shards.add(o["data"]["shard"])
    except UsageError as e:
        raise UsageError(f"--resume {args.resume}: {e}") from None
    argv = list(run.args)
    if argv[1:3] != ["cluster", "scan"]:
        raise UsageError(f"--resume {args.resume}: run {run.id} is not a cluster run (resume it with hostprint scan "
                         f"--resume {run.id})")

    class _P(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            raise UsageError(f"--resume {args.resume}: its command line: {message}")

    parser = _P(prog="hostprint")
    register(parser.add_subparsers(dest="command", parser_class=_P))
    old, rest = parser.parse_known_args(argv[1:])
    old.scan_argv = rest
    old.scheduler = args.scheduler or old.scheduler
    old.db, old.no_db, old.quiet, old.progress = args.db, False, args.quiet, args.progress
    old.connect_timeout = args.connect_timeout
    if any(getattr(args, o) for o in _OUTPUTS):  # outputs given now replace the recorded ones
        for o in _OUTPUTS:
            setattr(old, o, getattr(args, o))
    old.resume = run.id
    return old, _Resumed(run, parts, shards)


# ---------------------------------------------------------------------------- progress


class _Progress:
    """Dask's task states per shard (pending, processing on a worker, memory, erred) and the hosts
    in so far: a live table on a terminal, plain lines otherwise."""

    #: a table row per shard up to this many; beyond, only the shards processing or erred
    ROWS = 24

    def __init__(self, mode: str, quiet: bool, count: int, expected: dict[int, int]):
        self.quiet = quiet
        self.live_on = not quiet and (mode == "always" or (mode == "auto" and sys.stderr.isatty()))
        self.count, self.expected = count, expected
        self.state: dict[int, str] = {}
        self.where: dict[int, str] = {}
        self.hosts: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.workers = 0
        self.t0 = time.monotonic()
        self._live: Any = None

    def say(self, text: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(f"cluster: {text}", highlight=False, markup=False)
        else:
            print(f"cluster: {text}", file=sys.stderr, flush=True)

    def __enter__(self) -> _Progress:
        if self.live_on:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(stderr=True, force_terminal=True), refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        counts: dict[str, int] = {}
        for i in range(self.count):
            st = self.state.get(i, "pending")
            counts[st] = counts.get(st, 0) + 1
        done = sum(self.hosts.values())
        total = sum(self.expected.values())
        t = Table(title=f"hostprint cluster: {done}/{total} host(s) in", title_justify="left", expand=False)
        for col in ("SHARD", "STATE", "WORKER", "HOSTS", "CPU s"):
            t.add_column(col, justify="right" if col in ("SHARD", "HOSTS", "CPU s") else "left")
        style = {"processing": "yellow", "memory": "green", "erred": "red", "recorded": "dim"}
        shown = [i for i in range(self.count) if self.count <= self.ROWS
                 or self.state.get(i) in ("processing", "erred")][:self.ROWS]
        for i in shown:
            st = self.state.get(i, "pending")
            t.add_row(str(i), Text(st, style=style.get(st, "")), self.where.get(i, ""),
                      f"{self.hosts.get(i, 0)}/{self.expected.get(i, 0)}",
                      f"{self.cpu[i]:.1f}" if i in self.cpu else "")
        t.caption = ("  ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                     + f"; {self.workers} worker(s), {time.monotonic() - self.t0:.0f} s")
        return t


# ---------------------------------------------------------------------------- the run


class _Collector:
    """Host parts as they arrive: streamed -oJ lines (Dask events) and finished tasks' outputs.
    Each (shard, address) part is taken once, whichever copy comes first: a shard re-run after its
    worker died sends its hosts again, and the task's result repeats what was streamed."""

    def __init__(self, space: str, hosts: dict[str, Any], parts: set[tuple[int, str]]):
        self.space = space
        self.hosts = hosts
        self.parts = set(parts)
        self.new: list[tuple[int, str]] = []  # parts taken since the last flush

    def take(self, index: int, line: str, worker: str) -> str | None:
        from hostprint.commands.merge import combine
        from hostprint.report.inventory import host_from_dict

        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not isinstance(rec, dict) or rec.get("type", "host") != "host" or rec.get("incomplete"):
            return None  # a killed attempt's cut-short host: its re-run sends the whole one
        shard = rec.get("shard")
        if not isinstance(shard, dict) or shard.get("space") != self.space:
            raise UsageError(f"shard {index} on {worker} saw another job (targets or ports resolve differently "
                             f"there)")
        try:
            h = host_from_dict(rec)
        except (KeyError, TypeError, ValueError):
            return None
        key = (index, h.address)
        if key in self.parts:
            return None
        self.parts.add(key)
        self.new.append(key)
        self.hosts[h.address] = combine(self.hosts[h.address], h) if h.address in self.hosts else h
        return h.address


def _expected(job: _Job) -> dict[int, list[str]]:
    """Each shard's hosts (the plan, computed here as every worker computes it)."""
    from hostprint.probes.shard import ShardSpec

    return {i: ShardSpec(job.count, i, job.seed).plan(job.targets, job.ports).addresses for i in range(job.count)}


def run(args: argparse.Namespace) -> int:
    from hostprint.commands.scan import _outputs
    from hostprint.model import HostResult, ScanRun
    from hostprint.probes.shard import ShardSpec, parse_seed

    resumed: _Resumed | None = None
    if args.resume:
        args, resumed = _resume(args)
    if not args.scheduler:
        raise UsageError("hostprint cluster scan: give --scheduler tcp://HOST:PORT (the Dask scheduler)")
    job = _check_scan_part(list(args.scan_argv))
    outs = _outputs(args)
    if args.shards is not None and not 1 <= args.shards <= 1 << 20:
        raise UsageError(f"bad --shards '{args.shards}': use 1 to {1 << 20}")
    job.seed = parse_seed(args.seed) if args.seed is not None else int.from_bytes(os.urandom(6), "little")
    db = None if args.no_db else args.db
    if not args.no_db:
        from hostprint.report.store import check_inventory

        check_inventory(db)
    client = _client(args.scheduler, args.connect_timeout)
    inv = None
    futures: dict[int, Any] = {}
    stop = None
    begun = False  # the run record exists: from here on, whatever happens, it is marked
    try:
        workers = client.scheduler_info().get("workers", {})
        job.count = args.shards or max(1, 2 * len(workers))
        expected = _expected(job)
        space = ShardSpec(job.count, 0, job.seed).plan(job.targets, job.ports).space
        position = {a: i for i, a in enumerate(job.targets)}
        hosts: dict[str, HostResult] = {}
        if resumed is not None:
            run_ = resumed.run
            run_.finished = None
            hosts = {h.address: h for h in run_.hosts}
            parts, shards_done = resumed.parts, resumed.shards_done
        else:
            out_flags = [x for o in _OUTPUTS if getattr(args, o) for x in (f"-{o}", getattr(args, o))]
            argv = ["hostprint", "cluster", "scan", "--scheduler", args.scheduler, "--shards", str(job.count),
                    "--seed", str(job.seed), *out_flags, *job.argv]
            run_ = ScanRun(args=argv, scan_types=job.scan_types,
                           ports_scanned={k: v for k, v in job.ports.items() if v})
            parts, shards_done = set(), set()
        collect = _Collector(space, hosts, parts)
        if not args.no_db:
            from hostprint.report.store import open_inventory

            inv = open_inventory(db)
            if resumed is None:
                inv.begin_run(run_)
            else:
                run_.stats = {k: v for k, v in run_.stats.items() if k != "interrupted"}
                inv.finish_run(run_)  # "unfinished" again while it runs
        begun = True
        todo = {i: [a for a in expected[i] if (i, a) not in parts] for i in range(job.count) if i not in shards_done}
        todo = {i: left for i, left in todo.items() if left}
        skip = {i: [a for a in expected[i] if (i, a) in parts] for i in todo}
        prog = _Progress(args.progress, args.quiet, job.count, {i: len(v) for i, v in expected.items()})
        for i in range(job.count):
            prog.hosts[i] = sum((i, a) in parts for a in expected[i])
            if i not in todo:
                prog.state[i] = "recorded"
        prog.workers = len(workers)
        token = os.urandom(4).hex()
        topic, stop_name = f"hostprint-{run_.id}-{token}", f"hostprint-stop-{run_.id}-{token}"
        events: queue.Queue[Any] = queue.Queue()
        for i in todo:
            client.subscribe_topic(f"{topic}-{i}", events.put)
        from distributed import Event

        stop = Event(stop_name, client=client)
        with prog:
            what = f"x {sum(map(len, job.ports.values()))} ports" if job.ports else "(host discovery)"
            prog.say(f"{len(job.targets)} addresses {what} in {job.count} shards "
                     f"(seed {job.seed}) on {len(workers)} worker(s) of {args.scheduler}"
                     + (f"; resuming run {run_.id}: {len(todo)} shard(s) left, {len(parts)} part(s) recorded"
                        if resumed is not None else ""))
            for i in todo:  # one by one: a Ctrl-C meanwhile cancels exactly those submitted
                futures[i] = client.submit(run_shard, job.argv, job.count, i, job.seed, topic, stop_name,
                                           skip[i] or None, key=f"hostprint-{run_.id}-{token}-shard-{i}", pure=False,
                                           retries=1)
            _loop(client, futures, events, collect, job, inv, run_, position, prog)
        run_.hosts = [hosts[a] for a in sorted(hosts, key=lambda a: position.get(a, len(position)))]
        run_.finished = time.time()
        run_.stats = _stats(args, job, space, workers, run_)
        if inv is not None:
            inv.finish_run(run_)
        begun = False  # the record is final: a file that cannot be written is said as for scan
        _write(outs, run_)
        up = sum(h.status == "up" for h in run_.hosts)
        opened = sum(p.state == "open" for h in run_.hosts for p in h.ports)
        prog.say(f"done: {len(run_.hosts)} host(s), {up} up, {opened} open port(s) in "
                 f"{run_.finished - run_.started:.1f} s" + (f"; run {run_.id} in {inv.path}" if inv is not None else ""))
        return 0
    except BaseException as e:
        if not begun:
            raise
        raise _interrupted(e, client, futures, stop, job, inv, run_, hosts, expected, collect, position, outs) \
            from None
    finally:
        if inv is not None:
            inv.close()
        client.close()


def _loop(client: Any, futures: dict[int, Any], events: queue.Queue[Any], collect: _Collector, job: _Job,
          inv: Any, run_: Any, position: dict[str, int], prog: _Progress) -> None:
    """Take hosts as their lines arrive and shards as their tasks finish, until every task is in."""
    remaining = dict(futures)
    last_poll = 0.0
    while remaining:
        try:
            ts_msg = events.get(timeout=0.25)
            while True:
                _, msg = ts_msg
                if isinstance(msg, dict) and isinstance(msg.get("shard"), int) and msg["shard"] in futures:
                    if collect.take(msg["shard"], str(msg.get("line", "")), str(msg.get("worker", "?"))):
                        prog.hosts[msg["shard"]] = prog.hosts.get(msg["shard"], 0) + 1
                ts_msg = events.get_nowait()
        except queue.Empty:
            pass
        finished: list[ShardResult] = []
        for i, fut in list(remaining.items()):
            if fut.status == "finished":
                res: ShardResult = fut.result()
                for line in res.text.splitlines():
                    if collect.take(i, line, res.worker):
                        prog.hosts[i] = prog.hosts.get(i, 0) + 1
                finished.append(res)
                del remaining[i]
                prog.state[i], prog.where[i], prog.cpu[i] = "memory", res.worker, res.cpu_s
            elif fut.status == "error":
                prog.state[i] = "erred"
                prog.update()
                e = fut.exception()
                raise UsageError(f"cluster scan failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        _flush(collect, inv, run_, position, finished)
        for res in finished:
            job.results.append(res)
            again = f" ({res.skipped} streamed by an earlier attempt, not probed again)" if res.skipped else ""
            prog.say(f"shard {res.index} done on {res.worker}: {prog.hosts.get(res.index, 0)} host(s){again}, "
                     f"{res.cpu_s:.2f} s CPU, {res.wall_s:.2f} s; {len(futures) - len(remaining)}/{len(futures)} "
                     f"shards in")
        now = time.monotonic()
        if prog.live_on and now - last_poll >= 0.5:  # Dask's own view: which worker processes which shard
            last_poll = now
            key_shard = {f.key: i for i, f in remaining.items()}
            busy = {}
            for w, keys in client.processing().items():
                for k in keys:
                    if k in key_shard:
                        busy[key_shard[k]] = w
            for i in remaining:
                prog.state[i] = "processing" if i in busy else "pending"
                if i in busy:
                    prog.where[i] = busy[i]
            prog.workers = len(client.scheduler_info().get("workers", {}))
            prog.update()


def _flush(collect: _Collector, inv: Any, run_: Any, position: dict[str, int], finished: list[ShardResult]) -> None:
    """The hosts taken since the last call into the inventory (one transaction), then the record
    of their parts and of finished shards (what --resume skips): host first, so a crash between
    the two redoes a part, never loses one."""
    new, collect.new = collect.new, []
    if inv is None:
        return
    if new:
        addrs = list(dict.fromkeys(a for _, a in new))
        inv.add_hosts(run_.id, [(position.get(a, len(position)), collect.hosts[a]) for a in addrs])
    obs = [(a, PART, {"shard": i}) for i, a in new] + [("", SHARD_DONE, {"shard": r.index}) for r in finished]
    if obs:
        inv.add_observations(run_.id, obs)


def _stats(args: argparse.Namespace, job: _Job, space: str, workers: dict[str, Any], run_: Any) -> dict[str, Any]:
    per_worker: dict[str, dict[str, float]] = {}
    for sr in job.results:
        w = per_worker.setdefault(sr.worker, {"shards": 0, "cpu_s": 0.0, "wall_s": 0.0})
        w["shards"] += 1
        w["cpu_s"] += sr.cpu_s
        w["wall_s"] += sr.wall_s
    return {"cluster": {"scheduler": args.scheduler, "shards": job.count, "seed": job.seed,
                        "space": space, "workers_at_start": len(workers), "per_worker": per_worker,
                        "per_shard": [{"index": sr.index, "worker": sr.worker, "cpu_s": round(sr.cpu_s, 4),
                                       "wall_s": round(sr.wall_s, 4)}
                                      for sr in sorted(job.results, key=lambda x: x.index)],
                        "elapsed_s": round(time.time() - run_.started, 4)},
            "hosts_total": len(job.targets)}


def _write(outs: dict[str, str | None], run_: Any) -> list[str]:
    """-oJ/-oX/-oG/-oN from the merged hosts: the writers `scan` uses (each attempted even when
    another fails; the inventory is written as hosts arrive, not here)."""
    from hostprint.report import RunOutputs

    return RunOutputs(oJ=outs["oJ"], oX=outs["oX"], oG=outs["oG"], oN=outs["oN"], record=False).finish(run_)


def _interrupted(exc: BaseException, client: Any, futures: dict[int, Any], stop: Any, job: _Job, inv: Any,
                 run_: Any, hosts: dict[str, Any], expected: dict[int, list[str]], collect: _Collector,
                 position: dict[str, int], outs: dict[str, str | None]) -> BaseException:
    """Ctrl-C / SIGTERM / an erred shard after tasks were submitted: stop the shards' scans (the
    Event), cancel the tasks, write what came in to every output and mark the run record as
    interrupted (with which parts are missing), so neither the futures nor an "unfinished" record
    are left behind. Returns the exception to raise."""
    from hostprint.engine.signals import deferred
    from hostprint.report import Interrupted, signal_of

    signum = signal_of(exc)
    what = __import__("signal").Signals(signum).name if signum else "error"
    msg = ""
    try:
        with deferred():  # a second Ctrl-C waits until the record is right
            try:
                if stop is not None:
                    stop.set()
                client.cancel(list(futures.values()), force=True)
            except Exception:  # noqa: BLE001 - the scheduler is gone: nothing to release
                pass
            _flush(collect, inv, run_, position, [])
            taken = collect.parts
            incomplete = sorted({a for i, addrs in expected.items() for a in addrs if (i, a) not in taken} & set(hosts),
                                key=lambda a: position.get(a, 0))
            run_.hosts = [hosts[a] for a in sorted(hosts, key=lambda a: position.get(a, len(position)))]
            run_.finished = time.time()
            missing = sorted(i for i, addrs in expected.items() if any((i, a) not in taken for a in addrs))
            run_.stats = {"interrupted": {"by": what, "phase": "cluster", "incomplete": incomplete,
                                          "shards_missing": missing}, "hosts_total": len(job.targets)}
            written: list[str] = []
            problems: list[str] = []
            if inv is not None:
                try:
                    inv.finish_run(run_)
                    written.append(f"run {run_.id} in {inv.path} (hostprint cluster scan --resume {run_.id})")
                except (UsageError, OSError) as e:
                    problems.append(str(e))
            try:
                written += [w for w in _write(outs, run_) if w != "-"]
            except UsageError as e:
                problems.append(str(e))
            msg = (f"interrupted ({what}): {len(run_.hosts)} host(s) in, {len(missing)} of {job.count} shard(s) "
                   f"missing" + ("; saved to " + ", ".join(written) if written else "")
                   + ("; " + "; ".join(problems) if problems else ""))
    except (KeyboardInterrupt, SystemExit):
        pass
    if not signum:
        if isinstance(exc, UsageError):  # a shard that failed twice, another job's shard: one line
            return UsageError(f"{exc}; {msg.replace('interrupted (error): ', '', 1)}" if msg else str(exc))
        if msg:
            print(f"hostprint: {msg}", file=sys.stderr)
        return exc
    return Interrupted(msg or f"interrupted ({what})", signum)
