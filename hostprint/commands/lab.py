"""`hostprint lab up|down|status|exec|shell`: the demo lab as a long-lived thing a person can scan
by hand.

`up` leaves the lab running after this process exits (daemons are in their own sessions and
recorded in the state file), so `down`, `status` and `exec` work from any later shell. `up` on a
lab that is already running reuses it (and never signals what runs in it). `exec -- CMD` runs CMD
in the lab's scanner namespace (or --ns HOST's), where the lab's addresses are on-link and there is
no route out: the way to scan the lab without ever reaching another network by accident.
"""

from __future__ import annotations

import argparse
import json
import os
import re

from hostprint.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="build, inspect or remove the demo lab (network namespaces, root)")
    p.add_argument("action", choices=["up", "down", "status", "exec", "shell"], help="up: build the demo lab "
                   "(or reuse a running one); down: tear it down; status: show what runs; exec -- CMD: run CMD in "
                   "the lab's scanner namespace; shell: a shell there")
    p.add_argument("--name", default="demo", help="lab name, 1-12 of [a-z0-9] (default: demo)")
    p.add_argument("--ns", default="scan", metavar="HOST", help="exec/shell: in this lab host's namespace instead "
                   "of the scanner's")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.add_argument("command", nargs=argparse.REMAINDER, help="exec: the command, after --")
    p.set_defaults(func=run)


def _exec_target(name: str, ns: str) -> str:
    from hostprint.lab.lab import status_from_state
    from hostprint.lab.state import read_state

    st = read_state(name)
    status = status_from_state(st) if st else None
    if status is None or not status["running"]:
        raise UsageError(f"lab {name} is not running (start it with: hostprint lab up --name {name})")
    hosts = status["hosts"]
    if ns in ("scan", "scanner"):
        return str(status["scanner"]["ns"])
    if ns in hosts:
        return str(hosts[ns]["ns"])
    raise UsageError(f"lab {name} has no host {ns!r} (hosts: scan, {', '.join(hosts)})")


def _exec(args: argparse.Namespace) -> int:
    """Replace this process with CMD inside the namespace (exit code and signals pass through)."""
    rest = list(args.command or [])
    ns = _exec_target(args.name, args.ns)
    if args.action == "shell":
        if rest:
            raise UsageError("hostprint lab shell takes no command (use: hostprint lab exec -- CMD)")
        shell = os.environ.get("SHELL") or "/bin/sh"
        rest = [shell]
        os.environ["HOSTPRINT_LAB"] = args.name
        print(f"lab {args.name}: shell in namespace {ns} (exit to leave)", flush=True)
    elif not rest:
        raise UsageError("hostprint lab exec needs a command: hostprint lab exec -- hostprint scan 198.18.0.10")
    os.execvp("ip", ["ip", "netns", "exec", ns, *rest])
    return 127  # not reached


def _late_options(args: argparse.Namespace) -> None:
    """Options typed after the action (`lab up --name x`, `lab exec --ns web -- CMD`) land in the
    command remainder; take them from there, up to `--`."""
    rest = list(args.command or [])
    while rest:
        if rest[0] in ("--name", "--ns") and len(rest) >= 2:
            setattr(args, rest[0][2:], rest[1])
            rest = rest[2:]
        elif rest[0].startswith(("--name=", "--ns=")):
            k, _, v = rest[0][2:].partition("=")
            setattr(args, k, v)
            rest = rest[1:]
        elif rest[0] == "--json":
            args.json = True
            rest = rest[1:]
        else:
            break
    if rest[:1] == ["--"]:
        rest = rest[1:]
    args.command = rest


def run(args: argparse.Namespace) -> int:
    from hostprint.lab import Lab, demo_spec, lab_status

    _late_options(args)
    name = args.name
    if not re.match(r"^[a-z0-9]{1,12}$", name or ""):
        raise UsageError(f"bad lab name {name!r}: use 1-12 of [a-z0-9]")
    if os.geteuid() != 0:
        raise UsageError(f"hostprint lab {args.action} needs root (network namespaces)")
    if args.action in ("exec", "shell"):
        return _exec(args)
    if args.command:
        raise UsageError(f"unexpected arguments after '{args.action}': {' '.join(args.command)}")
    if args.action == "up":
        from hostprint.lab.state import read_state

        if Lab.running(name) is not None:
            st = lab_status(name)
            _print_status(st, as_json=args.json)
            print(f"lab {name} is already up; reusing it (nothing restarted). Scan it with: "
                  f"hostprint lab exec --name {name} -- hostprint scan ...")
            return 0
        old = read_state(name)
        if old and old.get("keep") and lab_status(name) and not (lab_status(name) or {}).get("running"):
            raise UsageError(f"lab {name} is half there (namespaces missing); remove it first: "
                             f"hostprint lab down --name {name}")
        lab = Lab(demo_spec(name), keep=True, strict=False)  # a broken daemon is reported; the rest runs
        try:
            lab.up()
        except BaseException:
            lab.down()
            raise
        _print_status(lab_status(name), as_json=args.json)
        print(f"lab {name} is up; scan it with: hostprint lab exec --name {name} -- hostprint scan 198.18.0.10; "
              f"remove it with: hostprint lab down --name {name}")
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
        print(f"  {name:<8} {h['address']:<15}{extra} {h['mac']}  {svcs}  {' | '.join(notes)}".rstrip())
