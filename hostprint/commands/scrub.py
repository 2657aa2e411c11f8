"""`hostprint scrub`: the fingerprint scrubber on a router (or on one host) in front of a network.

    hostprint scrub up --outside eth0 [--protect 198.19.0.0/16] [--no-synproxy] [--no-queue]
    hostprint scrub --dry-run --outside eth0        # print the ruleset, install nothing
    hostprint scrub status | down

`up` runs in the foreground (the NFQUEUE stage lives in this process) until SIGINT/SIGTERM, then
removes everything it installed; `down` stops a running scrubber of this namespace and removes
what a killed one left (hostprint/scrub/run.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from hostprint.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scrub", help="fingerprint scrubber (nftables + NFQUEUE + SYNPROXY) on a router",
                       description="Make the stacks behind this router answer alike (issue 19). Runs until "
                                   "interrupted; removes every rule on the way out.")
    p.add_argument("action", nargs="?", choices=["up", "down", "status"], default="up")
    p.add_argument("--dry-run", action="store_true", help="print the ruleset and exit")
    p.add_argument("--outside", metavar="IFACE", help="router mode: the interface the scanners are behind")
    p.add_argument("--protect", action="append", default=[], metavar="NET",
                   help="router mode: scrub only traffic to these networks (default: everything forwarded)")
    p.add_argument("--host", dest="host_mode", action="store_true", help="scrub this machine itself, not a router")
    p.add_argument("--ttl", type=int, default=64, help="TTL of every packet leaving (default 64)")
    p.add_argument("--mss", type=int, default=1360, help="MSS of every handshake (default 1360)")
    p.add_argument("--window", type=int, default=8192, help="largest handshake window (default 8192)")
    p.add_argument("--no-synproxy", action="store_true", help="let the hosts answer SYNs themselves")
    p.add_argument("--no-queue", action="store_true", help="nftables only (no user-space NFQUEUE stage)")
    p.add_argument("--queue-num", type=int, default=1919, metavar="N")
    p.add_argument("--no-icmp-limit", action="store_true", help="do not rate-limit ICMP errors")
    p.set_defaults(func=run)


def config(args: argparse.Namespace) -> Any:
    from hostprint.scrub.rules import ScrubConfig

    cfg = ScrubConfig(mode="host" if args.host_mode else "router", outside=args.outside, protect=list(args.protect),
                      ttl=args.ttl, mss=args.mss, window=args.window, synproxy=not args.no_synproxy,
                      queue=not args.no_queue, queue_num=args.queue_num, icmp_limit=not args.no_icmp_limit)
    bad = cfg.check()
    if bad:
        raise UsageError("; ".join(bad))
    return cfg


def run(args: argparse.Namespace) -> int:
    from hostprint.scrub import run as S
    from hostprint.scrub.rules import dry_run

    if args.dry_run:
        print(dry_run(config(args)), end="")
        return 0
    if args.action == "down":
        for line in S.down() or ["no scrubber here"]:
            print(line)
        return 0
    if args.action == "status":
        found = S.installed()
        for i in found:
            print(f"scrubber {i.pid} ({'running' if i.alive else 'owner gone'}): table {i.table or '-'}, "
                  f"ip(6)tables chains in {', '.join(i.chains) or '-'}")
        if not found:
            print("no scrubber here")
        return 0
    import os

    if os.geteuid() != 0:
        raise UsageError("the scrubber needs root (nftables, iptables, NFQUEUE)")
    cfg = config(args)
    if cfg.queue:
        from hostprint.scrub.nfqueue import missing

        why = missing()
        if why:
            raise UsageError(f"{why} (or use --no-queue)")
    stop = [False]

    def on_signal(signum: int, frame: object) -> None:
        stop[0] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with S.Scrubber(cfg) as sc:
            parts = ["nftables"] + (["NFQUEUE %d" % cfg.queue_num] if cfg.queue else []) + (["SYNPROXY"] if cfg.synproxy else [])
            stats = sc.serve(stop, ready=f"scrub: up ({', '.join(parts)}; table {sc.table}); Ctrl-C or "
                                         "`hostprint scrub down` removes it")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if stats:
        print("scrub: down; queue: " + ", ".join(f"{k} {v}" for k, v in stats.items()), file=sys.stderr)
    return 0
