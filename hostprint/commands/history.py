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


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("history", help="list recorded runs, or show one (from the SQLite inventory)")
    p.add_argument("run", nargs="?", help="show this run: an id prefix, 'last' or -N (N-th newest)")
    p.add_argument("--db", metavar="PATH", help="inventory file (default: $HOSTPRINT_DB or "
                   "~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("-n", dest="limit", metavar="N", help="list only the N newest runs")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON lines)")
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
    rows = [[r["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])), _duration(r),
             f"{r['hosts_up']}/{r['hosts_total']}", str(r["open_ports"]), shlex.join(_without_program(r["args"]))]
            for r in runs]
    if not sys.stdout.isatty():
        # A pipe or a file: columns as wide as their cells, ARGS last and whole, nothing cut or padded.
        if not runs:
            print(f"no runs recorded in {path}")
            return 0
        from hostprint.report.normal import _table

        print(f"hostprint runs in {path}")
        print("\n".join(_table([["ID", "STARTED", "DURATION", "HOSTS UP", "OPEN PORTS", "ARGS"], *rows])))
        return 0
    console = Console()
    if not runs:
        console.print(Text(f"no runs recorded in {path}"))
        return 0
    table = Table(title=Text(f"hostprint runs in {path}"), header_style="bold")
    # ID and STARTED are what `diff`, `report` and `history RUN` need: never cut. ARGS gives way
    # (cut with an ellipsis on a narrow terminal; whole in a pipe and with --json).
    for col, width in (("ID", 12), ("STARTED", 19), ("DURATION", 8), ("HOSTS UP", 8), ("OPEN PORTS", 10)):
        table.add_column(col, no_wrap=True, min_width=max(width, max((len(r[len(table.columns)]) for r in rows),
                                                                      default=0)),
                         justify="right" if col in ("HOSTS UP", "OPEN PORTS") else "left")
    table.add_column("ARGS", overflow="ellipsis", no_wrap=True, ratio=1)
    for r in rows:
        table.add_row(*[Text(c) for c in r])
    console.print(table)
    return 0
