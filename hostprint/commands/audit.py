"""`hostprint audit TARGET...`: what an attacker learns about hosts you own, per method, with the
countermeasures that apply to what was measured; `--apply NETNS` applies them in a lab network
namespace, measures again and shows before -> after (hostprint/audit.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from hostprint.errors import UsageError

NOTICE = "hostprint audit: only for hosts you own or are allowed to test"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="what an attacker learns about hosts you own, and what to change",
                       description=NOTICE + ". Runs -sS -sV -O --sequence (and --cron-os with --timing), scores "
                                            "each method in bits about the OS, lists exposures and countermeasures.")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="addresses of hosts you own")
    p.add_argument("-p", dest="ports", default="21,22,25,80,443,3306,5432,6379,8080",
                   help="ports to measure (default: common service ports)")
    p.add_argument("--timing", action="store_true", help="also the timing method (--cron-os s; ~40 s more)")
    p.add_argument("--apply", metavar="NETNS",
                   help="apply the sysctl, scrubber and daemon-setting countermeasures in this lab network namespace "
                        "(the one TARGET lives in), measure again and show before -> after; undone afterwards")
    p.add_argument("--keep-applied", action="store_true", help="with --apply: leave the sysctls and daemon "
                                                                 "settings changed (the scrubber is always stopped)")
    p.add_argument("-oJ", dest="json_out", metavar="FILE", help="also write one JSON object per host ('-' = stdout only JSON)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hostprint import audit
    from hostprint.model import AuditReport
    from hostprint.ports import parse_ports

    for t in args.targets:
        if t.startswith("-") or not t.strip():
            raise UsageError(f"bad target {t!r}")
    try:
        parse_ports(args.ports)
    except (UsageError, ValueError) as e:
        raise UsageError(f"-p {args.ports!r}: {e}") from None
    if args.apply:
        if len(args.targets) != 1:
            raise UsageError("--apply needs exactly one TARGET (the host in that namespace)")
        if os.geteuid() != 0:
            raise UsageError("--apply needs root (sysctl and the scrubber in a network namespace)")
        audit.check_netns(args.apply)
    if args.keep_applied and not args.apply:
        raise UsageError("--keep-applied needs --apply")
    audit.countermeasures()  # a broken DB is one line before any packet
    to_stdout = args.json_out == "-"
    if not to_stdout:
        print(NOTICE, file=sys.stderr)
    before = audit.measure(args.targets, args.ports, args.timing)
    reports = []
    for addr, h in before.items():
        methods, exposures = audit.score(h)
        reports.append(AuditReport(addr, methods, exposures, audit.recommend(methods)))
    if args.apply and reports:
        rep = reports[0]
        ap = audit.Applied(args.apply)
        try:
            for c in rep.countermeasures:
                c.applied = ap.apply(c)
            after = audit.measure(args.targets, args.ports, args.timing).get(rep.address)
            if after is not None:
                rep.after, rep.after_exposures = audit.score(after)
        finally:
            if args.keep_applied:
                ap.old.clear()
                ap.files.clear()
            undone = ap.undo()
        if undone and not to_stdout:
            print("hostprint audit: undone: " + "; ".join(undone), file=sys.stderr)
    if args.json_out:
        text = "".join(json.dumps(r.to_dict()) + "\n" for r in reports)
        if to_stdout:
            sys.stdout.write(text)
        else:
            with open(args.json_out, "w") as f:
                f.write(text)
    if not to_stdout:
        for r in reports:
            print(audit.render(r))
            print()
        missing = [t for t in args.targets if t not in before]
        for t in missing:
            print(f"{t}: no answer (not measured)")
    return 0
