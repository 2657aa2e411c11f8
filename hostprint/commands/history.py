"""`hostprint history`: what was scanned before, from the SQLite inventory.

Listing never creates an inventory file (a first-time user asking for history gets an empty list,
not a new file in ~/.local/share). `hostprint history RUN` re-renders one stored run, so old
results can be read without scanning again.
"""

from __future__ import annotations

import argparse
import json
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
    return f"{r['finished'] - r['started']:.1f}s"


def _without_program(argv: list[str]) -> list[str]:
    """Every run is hostprint's; the column is narrow enough without saying so."""
    if argv and argv[0].rsplit("/", 1)[-1].startswith("hostprint"):
        return argv[1:]
    return argv


def run(args: argparse.Namespace) -> int:
    import shlex

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from hostprint.report.inventory import Inventory

    limit = positive(args.limit, "-n")
    if args.import_file:
        from hostprint.report.inventory import check_inventory, read_recovery

        if args.run:
            raise UsageError("--import FILE records runs; give no RUN with it")
        read_recovery(args.import_file)  # a bad file fails before the inventory is touched
        check_inventory(args.db)
        with Inventory(args.db) as inv:
            ids = inv.import_file(args.import_file)
            print(f"imported run{'s' if len(ids) > 1 else ''} {', '.join(ids)} into {inv.path}")
        return 0
    with Inventory(args.db, create=False) as inv:
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
    console = Console()
    if not runs:
        console.print(Text(f"no runs recorded in {path}"))
        return 0
    table = Table(title=Text(f"hostprint runs in {path}"), header_style="bold")
    # Fixed columns never wrap; ARGS takes the rest and is cut with an ellipsis (full text: --json).
    for col in ("ID", "STARTED", "DURATION"):
        table.add_column(col, no_wrap=True)
    table.add_column("ARGS", overflow="ellipsis", no_wrap=True, ratio=1)
    for col in ("HOSTS UP", "OPEN PORTS"):
        table.add_column(col, no_wrap=True, justify="right")
    for r in runs:
        table.add_row(
            Text(r["id"]),
            Text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"]))),
            Text(_duration(r)),
            Text(shlex.join(_without_program(r["args"]))),
            Text(f"{r['hosts_up']}/{r['hosts_total']}"),
            Text(str(r["open_ports"])),
        )
    console.print(table)
    return 0
