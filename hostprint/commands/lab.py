"""`hostprint lab up|down|status`: the demo lab as a long-lived thing a person can scan by hand.

`up` leaves the lab running after this process exits (daemons are in their own sessions and
recorded in the state file), so `down` and `status` work from any later shell.
"""

from __future__ import annotations

import argparse
import json
import os
import re

from hostprint.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="build, inspect or remove the demo lab (network namespaces, root)")
    p.add_argument("action", choices=["up", "down", "status"], help="up: build the demo lab; "
                   "down: tear it down; status: show what runs")
    p.add_argument("--name", default="demo", help="lab name, 1-12 of [a-z0-9] (default: demo)")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hostprint.lab import Lab, demo_spec, lab_status

    name = args.name
    if not re.match(r"^[a-z0-9]{1,12}$", name or ""):
        raise UsageError(f"bad lab name {name!r}: use 1-12 of [a-z0-9]")
    if os.geteuid() != 0:
        raise UsageError(f"hostprint lab {args.action} needs root (network namespaces)")
    if args.action == "up":
        lab = Lab(demo_spec(name), keep=True, strict=False)  # a broken daemon is reported; the rest runs
        try:
            lab.up()
        except BaseException:
            lab.down()
            raise
        _print_status(lab_status(name), as_json=args.json)
        print(f"lab {name} is up; scan from it with: ip netns exec {lab.scanner_ns} <command>; "
              f"remove with: hostprint lab down --name {name}")
        return 0
    if args.action == "down":
        problems = Lab.cleanup_stale(name)
        for p in problems:
            print(f"warning: {p}")
        print(f"lab {name} is down")
        return 0
    st = lab_status(name)
    if st is None:
        print(json.dumps({"name": name, "running": False}) if args.json else f"lab {name} is not running")
        return 1
    _print_status(st, as_json=args.json)
    return 0 if st.get("running") else 1


def _print_status(st: dict | None, *, as_json: bool) -> None:  # type: ignore[type-arg]
    if st is None:
        return
    if as_json:
        print(json.dumps(st, indent=1))
        return
    sc = st.get("scanner") or {}
    print(f"lab {st['name']}: {'running' if st['running'] else 'BROKEN (namespaces missing)'}; "
          f"scanner {sc.get('address')} in {sc.get('ns')} ({sc.get('iface')}); files {st.get('tmpdir')}")
    for name, h in st["hosts"].items():
        svcs = ", ".join(f"{s['kind']}:{s['port']}{'' if s['alive'] and s['listening'] else ' (DOWN)'}"
                         for s in h["services"]) or "-"
        notes = []
        if h["silent"]:
            notes.append("silent")
        if h["firewall"]:
            notes.append("fw: " + "; ".join(h["firewall"]))
        if h["sysctls"]:
            notes.append(" ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in h["sysctls"].items()))
        if h["loss_pct"]:
            notes.append(f"loss {h['loss_pct']}%")
        if h["delay"] and (h["delay"]["mean_ms"] or h["delay"]["jitter_ms"]):
            notes.append(f"delay {h['delay']['mean_ms']}+{h['delay']['jitter_ms']} ms")
        extra = f" (+{h['addresses'] - 1} addrs)" if h["addresses"] > 1 else ""
        print(f"  {name:<8} {h['address']:<15}{extra} {h['mac']}  {svcs}  {' | '.join(notes)}")
