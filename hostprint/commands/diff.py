"""`hostprint diff RUN_A RUN_B`: what changed from run A to run B (both from the inventory).

Hosts that appeared or went away, ports whose state changed, services or versions that changed on
ports open in both, and OS verdicts that changed. Terminal tables by default; `--json` prints one
JSON object on stdout, `-oJ FILE` writes it to a file. The exit code is 0 whether or not anything
changed: a non-zero "differences found" status (diff(1)'s) would break `set -e` scripts that
only want the report; scripts read `counts` in the JSON instead.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("diff", help="compare two recorded runs", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", metavar="RUN_A", help="the reference (older) run: id prefix, 'last' or -N")
    p.add_argument("run_b", metavar="RUN_B", help="the run to compare with it")
    p.add_argument("--db", metavar="PATH", help="inventory file (default: $HOSTPRINT_DB or "
                   "~/.local/share/hostprint/inventory.sqlite)")
    p.add_argument("--json", action="store_true", help="print the diff as one JSON object")
    p.add_argument("-oJ", metavar="FILE", help="write the diff as JSON to FILE ('-' = stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hostprint.report import _write_text, check_output_paths
    from hostprint.report.diff import diff_runs
    from hostprint.report.store import open_inventory

    check_output_paths(oJ=args.oJ)
    with open_inventory(args.db, create=False) as inv:
        a = inv.load_run(args.run_a)
        b = inv.load_run(args.run_b)
    d = diff_runs(a, b)
    text = json.dumps(d.to_dict(), ensure_ascii=False, indent=None) + "\n"
    if args.oJ:
        _write_text(args.oJ, text, "JSON")
    if args.json:
        if args.oJ != "-":
            print(text, end="")
    elif args.oJ != "-":
        from hostprint.report.terminal import print_diff

        print_diff(d)
    return 0
