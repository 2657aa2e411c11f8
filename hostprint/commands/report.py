"""`hostprint report [RUN] -o report.html`: a stored run as one self-contained HTML page.

Reads the SQLite inventory only (never scans, never creates an inventory file), so a report can be
made later, on another machine, from a copied inventory. `--diff OLDER` adds what changed since
that run at the top of the page.
"""

from __future__ import annotations

import argparse

from hostprint.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="write a self-contained HTML report of a recorded run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", default="last",
                   help="the run: an id prefix, 'last' (default) or -N (N-th newest)")
    p.add_argument("-o", dest="output", metavar="FILE", required=True, help="HTML file to write ('-' = stdout)")
    p.add_argument("--db", metavar="PATH", help="inventory file (default: $HOSTPRINT_DB or "
                   "~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("--diff", metavar="RUN", help="also show what changed since this (older) run")
    p.add_argument("--timing-db", metavar="DB", help="timing DB to draw signature instants from when the run did "
                   "not store them (default: the one the run used, else the built-in one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hostprint.report import _write_text, check_output_paths
    from hostprint.report.diff import diff_runs
    from hostprint.report.html import render_report
    from hostprint.report.store import open_inventory

    if not args.output:
        raise UsageError("-o needs a file name (or '-' for stdout)")
    check_output_paths(**{"HTML": args.output})
    if args.timing_db:
        from hostprint.commands.args import timing_db_files
        from hostprint.signatures.timing_db import resolve_timing_db

        timing_db_files(args.timing_db)
        resolve_timing_db(args.timing_db)  # a bad --timing-db is the user's error, not a silent fallback
    with open_inventory(args.db, create=False) as inv:
        stored = inv.load_run(args.run)
        older = inv.load_run(args.diff) if args.diff else None
    diff = diff_runs(older, stored) if older is not None else None
    _write_text(args.output, render_report(stored, diff=diff, timing_db=args.timing_db), "HTML")
    return 0
