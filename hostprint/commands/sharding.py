"""The flags and the run plan of a sharded scan (`--shards N --shard i --seed S`, masscan's `--shard
x/y`), `--max-hostgroup`, and where `--resume` finds what an interrupted run finished: its -oG/-oX/-oJ
output, or its record in the inventory (a run id, `last`, `-N`).

The plan itself (which pairs a shard takes) is probes/shard.py; this module turns it into the runs
the runner makes: one per group of hosts sharing a port list, with the techniques the group needs
(host-level techniques only where the shard owns the host), minus the hosts a resumed run finished.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hostprint.errors import UsageError

if TYPE_CHECKING:
    from hostprint.probes.base import Technique
    from hostprint.probes.options import ScanOptions
    from hostprint.probes.shard import ShardPlan


def add_flags(p: argparse.ArgumentParser) -> None:
    add_shard_flags(p)
    p.add_argument("--max-hostgroup", type=_count, metavar="N", help="probe up hosts in groups of at most N "
                   "(nmap's; default 256): smaller groups report their first hosts sooner")
    # hosts of this shard a resumed cluster run already has (hostprint cluster scan gives it to its tasks)
    p.add_argument("--shard-skip", metavar="A,B", help=argparse.SUPPRESS)


def add_shard_flags(p: argparse.ArgumentParser) -> None:
    """--shards/--shard/--seed: scan and discover; timing, whose technique is host-level, takes a
    host in the shard that owns it."""
    p.add_argument("--shards", type=_count, metavar="N", help="split the target x port space into N shards "
                   "(zmap's flag; every shard runs the same command with the same --seed)")
    p.add_argument("--shard", metavar="i|x/y", help="the shard this run takes: i from 0 (zmap, with --shards N) "
                   "or x/y from 1 (masscan)")
    p.add_argument("--seed", metavar="S", help="seed of the target x port permutation, the same on every shard; "
                   "with -iR, of the random draw (the same S gives the same targets)")


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': use a whole number >= 1")
    return int(text)


@dataclass
class RunPlan:
    """The runner calls of one scan: (addresses, techniques) in order."""

    runs: list[tuple[list[str], list[Technique[Any]]]]
    shard: ShardPlan | None = None
    group_size: int | None = None
    skipped: set[str] = field(default_factory=set)

    @property
    def addresses(self) -> list[str]:
        return [a for addrs, _ in self.runs for a in addrs]

    @property
    def techniques(self) -> list[Technique[Any]]:
        return [t for _, techs in self.runs for t in techs]

    def keep(self, addresses: list[str]) -> None:
        """Only these addresses (the others have no route here: warned about, skipped)."""
        ok = set(addresses)
        self.runs = [(kept, techs) for addrs, techs in self.runs if (kept := [a for a in addrs if a in ok])]

    def json_extra(self) -> dict[str, Any]:
        return {"shard": self.shard.describe()} if self.shard is not None else {}


def shard_spec(args: argparse.Namespace):  # -> ShardSpec | None
    from hostprint.probes.shard import parse_shard

    return parse_shard(getattr(args, "shards", None), getattr(args, "shard", None), getattr(args, "seed", None))


def plan_run(args: argparse.Namespace, opts: ScanOptions, targets: list[str], names: list[str] | None,
             done: set[str]) -> RunPlan:
    """The runner calls of this scan: without --shards, every target with every technique; with it,
    this shard's hosts grouped by port list. `done`: hosts a resumed run finished (skipped after the
    shard is chosen, so a resumed shard stays the same shard). Techniques are created (DBs loaded)
    here, before any packet."""
    from hostprint.probes import registry
    from hostprint.probes.shard import HOST_LEVEL_PHASE

    spec = shard_spec(args)
    group = getattr(args, "max_hostgroup", None)
    skip = getattr(args, "shard_skip", None)
    if skip:
        done = done | {a for a in skip.split(",") if a}
    if spec is None:
        left = [a for a in targets if a not in done]
        return RunPlan([(left, registry.create(opts, names))] if left else [], None, group, done & set(targets))
    splan = spec.plan(targets, opts.ports)
    runs: list[tuple[list[str], list[Technique[Any]]]] = []
    for part in splan.parts:
        left = [a for a in part.addresses if a not in done]
        if not left:
            continue
        o = copy.copy(opts)
        o.ports = {proto: list(part.ports.get(proto, [])) for proto in opts.ports}
        techs = registry.create(o, names)
        if not part.owner:
            techs = [t for t in techs if t.phase < HOST_LEVEL_PHASE]
        runs.append((left, techs))
    if splan.split and any(t.phase >= HOST_LEVEL_PHASE for _, ts in runs for t in ts):
        import sys

        print(f"hostprint: warning: shard {spec.index} of {spec.count} shares the ports of "
              f"{', '.join(splan.split)} with other shards; host-level techniques (-O, --sequence, --cron-os, "
              f"--traceroute) see only this shard's ports there (fewer shards than hosts keep hosts whole)",
              file=sys.stderr)
    return RunPlan(runs, splan, group, done & set(splan.addresses))


def owned_hosts(args: argparse.Namespace, targets: list[str], ports: dict[str, list[int]]):
    """For a host-level command (timing): the targets this shard owns, each with all its ports,
    and the shard's -oJ block; (targets, {}) when the run is not sharded. Every host is owned by
    exactly one shard (probes/shard.py), so the shards' outputs together are the unsharded run."""
    spec = shard_spec(args)
    if spec is None:
        return targets, {}
    splan = spec.plan(targets, ports)
    owned = {a for part in splan.parts if part.owner for a in part.addresses}
    return [a for a in dict.fromkeys(targets) if a in owned], {"shard": splan.describe()}


def stats(plan: RunPlan) -> dict[str, Any]:
    if plan.shard is None:
        return {}
    s = plan.shard
    return {"shard": {**s.describe(), "hosts": len(s.addresses), "pairs": s.pairs, "hosts_total": s.hosts_total,
                      "split": s.split}}


# ---------------------------------------------------------------------------- --resume from the inventory


def resume_source(spec: str, db: str | None):
    """--resume SPEC: a file (-oG/-oX/-oJ output), else a run in the inventory (`--db` or the
    default): its command line, the hosts it finished, and its id (the resumed run replaces it)."""
    import os

    from hostprint.targets import ResumeState, read_resume

    if os.path.exists(spec) or os.sep in spec:
        return read_resume(spec)
    from hostprint.report.store import open_inventory

    try:
        with open_inventory(db, create=False) as inv:
            run = inv.load_run(spec)
            where = inv.path
    except UsageError as e:
        raise UsageError(f"--resume {spec}: no such file, and not a run in the inventory ({e})") from None
    info = run.stats.get("interrupted") if isinstance(run.stats, dict) else None
    incomplete = set((info or {}).get("incomplete") or []) if isinstance(info, dict) else set()
    hosts = [h for h in run.hosts if h.address not in incomplete]
    return ResumeState(list(run.args), hosts, f"run {run.id} in {where}", run.id)
