"""`hostprint history`: what was scanned before, from the SQLite inventory.

Listing never creates an inventory file (a first-time user asking for history gets an empty list,
not a new file in ~/.local/share). `hostprint history RUN` re-renders one stored run, so old
results can be read without scanning again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from hostprint.commands.args import positive
from hostprint.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("history", help="list recorded runs, or show one (from the SQLite inventory)")
    p.add_argument("run", nargs="?", help="show this run: an id prefix, 'last' or -N (N-th newest)")
    p.add_argument("--db", metavar="PATH", help="inventory file (default: $HOSTPRINT_DB or "
                   "~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("-n", dest="limit", metavar="N", help="list only the N newest runs")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON lines)")
    p.add_argument("--import", dest="import_file", metavar="FILE",
                   help="record the run(s) of a recovery file (written when the inventory could not take a "
                        "run) or of hostprint -oJ output")
    p.set_defaults(func=run)


def _duration(r: dict) -> str:  # type: ignore[type-arg]
    if r.get("finished") is None:
        return "unfinished"
    took = f"{r['finished'] - r['started']:.1f}s"
    return f"interrupted:{took}" if r.get("interrupted") else took  # one word: columns stay split-able


def _without_program(argv: list[str]) -> list[str]:
    """Every run is hostprint's; the column is narrow enough without saying so."""
    if argv and argv[0].rsplit("/", 1)[-1].startswith("hostprint"):
        return argv[1:]
    return argv


def run(args: argparse.Namespace) -> int:
    import shlex

    from rich.console import Console
    from rich.text import Text

    from hostprint.report.store import open_inventory

    limit = positive(args.limit, "-n")
    if args.import_file:
        from hostprint.report.inventory import read_recovery
        from hostprint.report.store import check_inventory

        if args.run:
            raise UsageError("--import FILE records runs; give no RUN with it")
        read_recovery(args.import_file)  # a bad file fails before the inventory is touched
        check_inventory(args.db)
        with open_inventory(args.db) as inv:
            ids = inv.import_file(args.import_file)
            print(f"imported run{'s' if len(ids) > 1 else ''} {', '.join(ids)} into {inv.path}")
        return 0
    with open_inventory(args.db, create=False) as inv:
        if args.run:
            stored = inv.load_run(args.run)
            if args.json:
                from hostprint.report.jsonl import dumps_record

                for h in stored.hosts:
                    print(dumps_record(stored.host_record(h)))
            else:
                from hostprint.report.terminal import print_run

                print_run(stored)
            return 0
        runs = inv.runs(limit=limit)
        path = inv.path
    if args.json:
        for r in runs:
            print(json.dumps(r))
        return 0
    rows = [[r["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])), _duration(r),
             f"{r['hosts_up']}/{r['hosts_total']}", str(r["open_ports"]), shlex.join(_without_program(r["args"]))]
            for r in runs]
    from hostprint.report.normal import _table

    head = ["ID", "STARTED", "DURATION", "HOSTS UP", "OPEN PORTS", "ARGS"]
    if not runs:
        print(f"no runs recorded in {path}")
        return 0
    if not sys.stdout.isatty():
        # A pipe or a file: columns as wide as their cells, ARGS last and whole, nothing cut or padded.
        print(f"hostprint runs in {path}")
        print("\n".join(_table([head, *rows])))
        return 0
    # A terminal: ID and STARTED are what `diff`, `report` and `history RUN` need, never cut; ARGS
    # gives way (cut with an ellipsis to the width left; whole in a pipe and with --json).
    console = Console(highlight=False, soft_wrap=True)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head[:5])]
    left = max(console.width - sum(widths) - 5 - 1, 12)
    cut = [[*r[:5], r[5] if len(r[5]) <= left else r[5][:left - 1] + "…"] for r in rows]
    lines = _table([head, *cut])
    console.print(Text(f"hostprint runs in {path}", style="bold"))
    console.print(Text(lines[0], style="bold"))
    for ln in lines[1:]:
        console.print(Text(ln))
    return 0
