"""`hostprint guard [--clean]`: the RST guard tables of this network namespace, and their removal.

Every raw scan installs an nftables table (hostprint_<pid>_<start>_<n>) that drops replies to
hostprint's probe ports, and removes it on every exit path it can see. A SIGKILL (or a power cut of
the process) leaves it behind until the next raw run removes it as stale; `hostprint guard --clean`
removes it now. A table is stale when its owner is gone: its PID no longer runs, or runs a process
that started at another time (a reused PID). Tables of running scans are never touched.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("guard", help="list the RST guard tables; --clean removes stale ones",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean", action="store_true", help="remove tables whose hostprint process is gone")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shutil

    from hostprint.engine import rstguard
    from hostprint.errors import NeedsRoot, UsageError, have_raw_sockets

    if not shutil.which("nft"):
        raise UsageError("hostprint guard needs nftables (Debian package nftables): nft not found")
    if not have_raw_sockets():
        raise NeedsRoot("listing and removing nftables tables")
    if args.clean:
        removed = rstguard.remove_stale(strict=True)
        for name in removed:
            print(f"removed stale RST guard table {name}")
        if not removed:
            print("no stale RST guard tables")
        return 0
    tables = rstguard.list_tables()
    if not tables:
        print("no RST guard tables")
    for t in tables:
        state = "running" if t.alive else "stale (remove with hostprint guard --clean)"
        print(f"{t.family} {t.name}  pid {t.pid}  {state}")
    return 0
