"""`hostprint demo`: build the demo lab, scan and fingerprint it from the scanner namespace, print
the report, tear the lab down (also on errors and Ctrl-C). The same lab code the tests use."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from hostprint.errors import NeedsRoot


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run hostprint against the built-in demo lab",
                       description="Stand up the demo lab (namespaces, real daemons), scan it, print the report, tear it down.")
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards (hostprint lab down removes it)")
    p.add_argument("--out", metavar="DIR", help="also write JSON lines, XML, grepable and normal output here")
    p.set_defaults(func=run)


def _hostprint(lab, *args: str) -> int:
    argv = [sys.executable, "-m", "hostprint", *args]
    print(f"\n$ hostprint {' '.join(args)}", flush=True)
    return lab.exec(lab.scanner_ns, argv, check=False, stdout=None, stderr=None).returncode


def run(args: argparse.Namespace) -> int:
    from hostprint.lab import Lab, demo_spec

    if os.geteuid() != 0:
        raise NeedsRoot("the demo lab creates network namespaces")
    out = args.out or tempfile.mkdtemp(prefix="hostprint-demo-")
    db = os.path.join(out, "inventory.sqlite")
    spec = demo_spec()
    targets = ",".join(h.address.split(".")[-1] for h in spec.hosts)
    prefix = ".".join(spec.hosts[0].address.split(".")[:3])
    with Lab(spec, keep=args.keep, strict=False) as lab:  # a broken daemon is reported; the rest runs
        print("demo lab up:", ", ".join(f"{h.name} {h.address} {lab.hosts[h.name].address6 or ''} "
                                        f"{' '.join(h.services) or '(no services)'}" for h in spec.hosts), flush=True)
        rc = _hostprint(lab, "discover", f"{prefix}.1-50", "--db", db, "--progress", "never")
        rc |= _hostprint(lab, "scan", "-sS", "-p-", "-T4", "-sV", "-O", "--sequence", f"{prefix}.{targets}",
                         "--db", db, "-oA", os.path.join(out, "demo"), "--progress", "never")
        web = spec.hosts[0].address
        rc |= _hostprint(lab, "timing", web, "-p", "80", "--tests", "sf", "--cron-timeout", "40",
                         "-oJ", os.path.join(out, "timing.jsonl"))
        rc |= _hostprint(lab, "scan", "-sU", "-p", "53,69,123,161,40125", "-Pn", web,
                         "--db", db, "--progress", "never")
        # IPv6 (issue 17): the same hosts over 2001:2::/64, found by the all-nodes echo and ND,
        # port-scanned and fingerprinted over IPv6, each paired with its IPv4 address (--dual-stack)
        v6 = [a for h in spec.hosts if (a := lab.hosts[h.name].address6)]
        if v6:
            rc |= _hostprint(lab, "discover", "-PB", "-PR", "-PE", "2001:2::/120", "--db", db, "--progress", "never")
            rc |= _hostprint(lab, "scan", "-sS", "-sV", "-O", "--dual-stack", "-p", "21,22,80,1000-1010,2222,6379,8080",
                             *v6, *[h.address for h in spec.hosts], "--db", db, "-oA", os.path.join(out, "demo6"),
                             "--progress", "never")
        rc |= _hostprint(lab, "history", "--db", db)
        rc |= _hostprint(lab, "report", "--db", db, "-2", "-o", os.path.join(out, "report.html"))
    print(f"\noutputs, HTML report and inventory in {out}")
    return rc
