"""`hostprint cluster scan --scheduler tcp://HOST:8786 [scan flags]`: one scan run by Dask workers.

The job is split into shards (`--shards N`, default twice the workers; `--seed S`, default a
random one, recorded), each a Dask task: on its worker, `hostprint scan … --shards N --shard i
--seed S -oJ -` in the worker's own network namespace/machine (workers are started with Dask's own
CLI, `dask worker tcp://HOST:8786`, as root or with CAP_NET_RAW). Results are taken as the tasks
finish: each host goes into the inventory at its place in the job as soon as its shard is in
(`history` shows the run "unfinished" meanwhile). A worker that dies mid-shard loses its task;
Dask's scheduler runs it again elsewhere, and only one result of a task ever reaches us, so no
host is counted twice (a host is also stored by its position: a second copy would replace it).

Everything is checked before any task is submitted: the scan flags (the same parser as `scan`),
the outputs, the inventory, the scheduler (reachable, at least one worker).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

from hostprint.errors import UsageError

#: flags the cluster command owns (given to the scan part they would fight the shards' own)
_OWNED = ("-oJ", "-oX", "-oG", "-oN", "-oA", "--db", "--no-db", "--shards", "--shard", "--seed", "--resume")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cluster", help="run a scan on Dask workers (several machines)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="cluster_command", metavar="COMMAND")
    s = csub.add_parser("scan", help="scan with the workers of a Dask scheduler: [scan flags] as for hostprint scan",
                        allow_abbrev=False)
    s.add_argument("--scheduler", required=True, metavar="tcp://HOST:PORT", help="the Dask scheduler")
    s.add_argument("--shards", type=int, metavar="N", help="shards (tasks) of the job (default: twice the workers)")
    s.add_argument("--seed", metavar="S", help="seed of the target x port permutation (default: random, recorded)")
    s.add_argument("-oJ", metavar="FILE", help="the merged hosts as JSON lines ('-' = stdout)")
    s.add_argument("--db", metavar="PATH|URL", help="inventory: SQLite file or postgresql://… (default: $HOSTPRINT_DB)")
    s.add_argument("--no-db", action="store_true", help="record nothing in the inventory")
    s.add_argument("--connect-timeout", type=float, default=15.0, metavar="S",
                   help="seconds to reach the scheduler and see a worker (default 15)")
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


def _die_with_parent() -> None:
    """In the shard's process: SIGTERM when the worker that started it dies (a killed worker must
    not leave its scan running)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_shard(argv: list[str], count: int, index: int, seed: int) -> ShardResult:
    """The Dask task: one shard of the job, as a hostprint process on this worker."""
    import subprocess
    import tempfile

    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = "local"
    cmd = [sys.executable, "-m", "hostprint", "scan", *argv, "--shards", str(count), "--shard", str(index),
           "--seed", str(seed), "-oJ", "-", "--no-db", "--progress", "never"]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, preexec_fn=_die_with_parent)
        assert p.stdout is not None
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    res = ShardResult(index, worker, out.decode("utf-8", "replace"), usage.ru_utime + usage.ru_stime,
                      time.monotonic() - t0, p.returncode, stderr[-4000:])
    if p.returncode != 0:
        raise RuntimeError(f"shard {index} on {worker}: hostprint exited {p.returncode}: "
                           f"{(stderr.strip().splitlines() or [''])[-1]}")
    return res


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
                             f"(cluster scan's own -oJ, --db, --no-db, --shards, --seed), not to each shard")
    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]  # one line, exit 2, as the cli's parser
            raise UsageError(message)

    parser = _Parser(prog="hostprint cluster scan")
    scan.register(parser.add_subparsers(dest="command", parser_class=_Parser))
    args = parser.parse_args(scan.normalise_ping(["scan", *rest]))
    if getattr(args, "ping_only", False) or getattr(args, "list_scan", False):
        raise UsageError("hostprint cluster scan runs port scans (-sn and -sL are not sharded by the cluster)")
    opts = scan.scan_options(args)
    targets, _names = scan._named_targets(args)
    return _Job(rest, canonical_hosts(targets), opts.ports, opts.scan_kinds)


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


def run(args: argparse.Namespace) -> int:
    from hostprint.commands.merge import combine
    from hostprint.model import HostResult, ScanRun
    from hostprint.probes.shard import parse_seed
    from hostprint.report import _write_text, check_output_paths
    from hostprint.report.inventory import read_recovery
    from hostprint.report.jsonl import dumps_record

    job = _check_scan_part(list(args.scan_argv))
    check_output_paths(oJ=args.oJ)
    if args.shards is not None and not 1 <= args.shards <= 1 << 20:
        raise UsageError(f"bad --shards '{args.shards}': use 1 to {1 << 20}")
    if args.seed is not None:
        job.seed = parse_seed(args.seed)
    else:
        job.seed = int.from_bytes(os.urandom(6), "little")
    db = None if args.no_db else args.db
    if not args.no_db:
        from hostprint.report.store import check_inventory

        check_inventory(db)
    client = _client(args.scheduler, args.connect_timeout)
    inv = None
    try:
        workers = client.scheduler_info().get("workers", {})
        job.count = args.shards or max(1, 2 * len(workers))
        argv = ["hostprint", "cluster", "scan", "--scheduler", args.scheduler, "--shards", str(job.count),
                "--seed", str(job.seed), *job.argv]
        run_ = ScanRun(args=argv, scan_types=job.scan_types, ports_scanned={k: v for k, v in job.ports.items() if v})
        position = {a: i for i, a in enumerate(job.targets)}
        hosts: dict[str, HostResult] = {}
        if not args.no_db:
            from hostprint.report.store import open_inventory

            inv = open_inventory(db)
            inv.begin_run(run_)
        say = (lambda text: None) if args.quiet else (lambda text: print(f"cluster: {text}", file=sys.stderr))
        say(f"{len(job.targets)} addresses x {sum(map(len, job.ports.values()))} ports in {job.count} shards "
            f"(seed {job.seed}) on {len(workers)} worker(s) of {args.scheduler}")
        from distributed import as_completed

        futures = [client.submit(run_shard, job.argv, job.count, i, job.seed, key=f"hostprint-{run_.id}-shard-{i}",
                                 pure=False, retries=1) for i in range(job.count)]
        space = None
        for fut in as_completed(futures):
            try:
                res: ShardResult = fut.result()
            except Exception as e:  # noqa: BLE001 - a task's own error, said in one line
                raise UsageError(f"cluster scan failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
                    from None
            job.results.append(res)
            changed: list[str] = []
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as tf:
                tf.write(res.text)
                tf.flush()
                shard_runs = read_recovery(tf.name) if res.text.strip() else []
                tags = _spaces(res.text)
            if tags - {space} and space is not None or len(tags) > 1:
                raise UsageError(f"shard {res.index} saw another job (targets or ports resolve differently on "
                                 f"{res.worker})")
            space = space or next(iter(tags), None)
            for r, _obs in shard_runs:
                for h in r.hosts:
                    hosts[h.address] = combine(hosts[h.address], h) if h.address in hosts else h
                    changed.append(h.address)
            if inv is not None and changed:
                inv.add_hosts(run_.id, [(position.get(a, len(position)), hosts[a]) for a in dict.fromkeys(changed)])
            if not args.quiet:  # Dask's task states: what each worker is processing now
                running = sum(1 for keys in client.processing().values() for _ in keys)
                alive = len(client.scheduler_info().get("workers", {}))
            say(f"shard {res.index} done on {res.worker}: {len(changed)} host(s), {res.cpu_s:.2f} s CPU, "
                f"{res.wall_s:.2f} s; {len(job.results)}/{job.count} shards in"
                + ("" if args.quiet else f", {running} processing on {alive} worker(s)"))
        run_.hosts = [hosts[a] for a in sorted(hosts, key=lambda a: position.get(a, len(position)))]
        run_.finished = time.time()
        per_worker: dict[str, dict[str, float]] = {}
        for sr in job.results:
            w = per_worker.setdefault(sr.worker, {"shards": 0, "cpu_s": 0.0, "wall_s": 0.0})
            w["shards"] += 1
            w["cpu_s"] += sr.cpu_s
            w["wall_s"] += sr.wall_s
        run_.stats = {"cluster": {"scheduler": args.scheduler, "shards": job.count, "seed": job.seed,
                                  "space": space, "workers_at_start": len(workers), "per_worker": per_worker,
                                  "per_shard": [{"index": sr.index, "worker": sr.worker, "cpu_s": round(sr.cpu_s, 4),
                                                 "wall_s": round(sr.wall_s, 4)}
                                                for sr in sorted(job.results, key=lambda x: x.index)],
                                  "elapsed_s": round(run_.finished - run_.started, 4)},
                      "hosts_total": len(job.targets)}
        if inv is not None:
            inv.finish_run(run_)
        if args.oJ:
            _write_text(args.oJ, "".join(dumps_record(run_.host_record(h)) + "\n" for h in run_.hosts), "JSON lines")
        up = sum(h.status == "up" for h in run_.hosts)
        opened = sum(p.state == "open" for h in run_.hosts for p in h.ports)
        say(f"done: {len(run_.hosts)} host(s), {up} up, {opened} open port(s) in {run_.finished - run_.started:.1f} s"
            + (f"; run {run_.id} in {inv.path}" if inv is not None else ""))
        return 0
    finally:
        if inv is not None:
            inv.close()
        client.close()


def _spaces(text: str) -> set[str]:
    from hostprint.commands.merge import shard_blocks

    return {s["space"] for s in shard_blocks(text) if isinstance(s.get("space"), str)}
