"""`hostprint merge FILE…`: one run from the -oJ outputs of shards (`--shards N --shard i --seed S`
run by hand, e.g. on machines that cannot reach a Dask scheduler) or of any runs over disjoint
targets.

Shard outputs are checked before anything is written: every file's host records name the same
job (hosts, ports, N and seed: the `shard.space` of -oJ records), no shard appears twice, and a
missing shard is said on stderr (the merge is then incomplete, and its stats say which shards
are missing). A host found in several files (its ports split between shards, when there are fewer
hosts than shards) becomes one host: listed ports together, folded ports summed per state, the OS
and timing blocks of the shard that ran them. The result goes to -oJ (default stdout) and, with
--db, to the inventory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostprint.errors import UsageError
from hostprint.model import ExtraPorts, HostResult, PortResult, ScanRun


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("merge", help="merge the -oJ outputs of shards into one run", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="hostprint -oJ output (one per shard)")
    p.add_argument("-oJ", metavar="FILE", default="-", help="write the merged run as JSON lines (default: stdout)")
    p.add_argument("--db", metavar="PATH|URL", help="also record the merged run in this inventory "
                   "(SQLite file or postgresql://…)")
    p.add_argument("--allow-missing", action="store_true", help="merge even when shards are missing")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class ShardTag:
    """The `shard` block of a -oJ host record."""

    index: int
    count: int
    seed: int
    space: str


def _shard_tags(path: str) -> set[ShardTag]:
    tags: set[ShardTag] = set()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    for s in shard_blocks(text):
        try:
            tags.add(ShardTag(int(s["index"]), int(s["count"]), int(s["seed"]), str(s["space"])))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{path}: a host record with a malformed shard block") from None
    return tags


def combine(a: HostResult, b: HostResult) -> HostResult:
    """One host from two shards' views of it (disjoint ports)."""
    out = HostResult(a.address)
    out.status = "up" if "up" in (a.status, b.status) else a.status
    out.reasons = list(dict.fromkeys([*a.reasons, *b.reasons]))
    out.hostname = a.hostname or b.hostname
    out.mac = a.mac or b.mac
    out.distance = a.distance if a.distance is not None else b.distance
    rtts = [r for r in (a.rtt_us, b.rtt_us) if r is not None]
    out.rtt_us = min(rtts) if rtts else None
    seen: dict[tuple[str, int], PortResult] = {}
    for p in [*a.ports, *b.ports]:
        seen.setdefault((p.protocol, p.port), p)
    out.ports = sorted(seen.values(), key=lambda p: (p.protocol, p.port))
    folded: dict[tuple[str | None, str], ExtraPorts] = {}
    for e in [*a.extraports, *b.extraports]:
        cur = folded.get((e.protocol, e.state))
        if cur is None:
            folded[(e.protocol, e.state)] = ExtraPorts(e.state, e.count, dict(e.reasons), e.protocol)
        else:
            cur.count += e.count
            for k, v in e.reasons.items():
                cur.reasons[k] = cur.reasons.get(k, 0) + v
    out.extraports = list(folded.values())
    out.os = a.os if (a.os.matches or a.os.blocks or a.os.unknown is not None) else b.os
    out.sequence = a.sequence or b.sequence
    starts = [t for t in (a.started, b.started) if t is not None]
    ends = [t for t in (a.finished, b.finished) if t is not None]
    out.started = min(starts) if starts else None
    out.finished = max(ends) if ends else None
    out.hostnames = a.hostnames or b.hostnames
    out.warnings = list(dict.fromkeys([*a.warnings, *b.warnings]))
    out.trace = a.trace or b.trace
    return out


def merge_files(files: list[str], allow_missing: bool = False) -> tuple[ScanRun, list[str]]:
    """The merged run and warnings. UsageError (one line) on inputs that do not belong together."""
    from hostprint.probes.shard import canonical_hosts
    from hostprint.report.inventory import read_recovery

    tags: dict[str, set[ShardTag]] = {f: _shard_tags(f) for f in files}
    runs = {f: read_recovery(f) for f in files}
    warnings: list[str] = []
    all_tags = {t for ts in tags.values() for t in ts}
    shard_info: dict[str, object] = {}
    if all_tags:
        spaces = {(t.space, t.count, t.seed) for t in all_tags}
        if len(spaces) > 1 or any(not ts for ts in tags.values()):
            plain = [f for f, ts in tags.items() if not ts]
            why = f"{plain[0]} is not a shard output" if plain else "they are shards of different jobs"
            raise UsageError(f"cannot merge {', '.join(files)}: {why} (same targets, ports, --shards and --seed "
                             f"make one job)")
        by_index: dict[int, str] = {}
        for f, ts in tags.items():
            for t in ts:
                if t.index in by_index and by_index[t.index] != f:
                    raise UsageError(f"shard {t.index} appears twice: {by_index[t.index]} and {f}")
                by_index[t.index] = f
        space, count, seed = next(iter(spaces))
        missing = [i for i in range(count) if i not in by_index]
        if missing:
            msg = f"shard(s) {', '.join(map(str, missing))} of {count} missing: the merge is incomplete"
            if not allow_missing:
                raise UsageError(f"{msg} (--allow-missing merges anyway)")
            warnings.append(msg)
        shard_info = {"count": count, "seed": seed, "space": space, "merged": sorted(by_index), "missing": missing}
    hosts: dict[str, HostResult] = {}
    first: ScanRun | None = None
    sources = []
    for f in files:
        for r, _obs in runs[f]:
            first = first or r
            sources.append({"file": f, "run": r.id})
            for h in r.hosts:
                hosts[h.address] = combine(hosts[h.address], h) if h.address in hosts else h
    assert first is not None  # read_recovery refuses a file without a run
    args = _without_shard_flags(first.args)
    merged = ScanRun(args=args, started=min(r.started for f in files for r, _ in runs[f]), finished=time.time())
    merged.hosts = [hosts[a] for a in canonical_hosts(list(hosts))]
    merged.stats = {"merged_from": sources, **({"shard": shard_info} if shard_info else {})}
    return merged, warnings


def _without_shard_flags(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--shards", "--shard", "--seed", "-oJ", "--db"):
            skip = True
            continue
        if a.split("=", 1)[0] in ("--shards", "--shard", "--seed", "-oJ", "--db"):
            continue
        out.append(a)
    return out


def run(args: argparse.Namespace) -> int:
    from hostprint.report import _write_text, check_output_paths
    from hostprint.report.jsonl import dumps_record

    check_output_paths(oJ=args.oJ)
    if args.db:
        from hostprint.report.store import check_inventory

        check_inventory(args.db)
    merged, warnings = merge_files(list(args.files), args.allow_missing)
    for w in warnings:
        print(f"hostprint: warning: {w}", file=sys.stderr)
    _write_text(args.oJ, "".join(dumps_record(merged.host_record(h)) + "\n" for h in merged.hosts), "JSON lines")
    if args.db:
        from hostprint.report.store import open_inventory

        with open_inventory(args.db) as inv:
            inv.record_run(merged)
            print(f"hostprint: merged run {merged.id} ({len(merged.hosts)} hosts) recorded in {inv.path}",
                  file=sys.stderr)
    return 0


def shard_blocks(text: str) -> list[dict[str, Any]]:
    """The `shard` blocks of -oJ lines (lines that are not JSON objects are skipped)."""
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        s = d.get("shard") if isinstance(d, dict) else None
        if isinstance(s, dict):
            out.append(s)
    return out
