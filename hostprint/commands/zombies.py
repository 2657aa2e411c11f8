"""`hostprint zombies RANGE`: which hosts could serve an idle scan (-sI), and why the others not.

Each candidate gets six readings of its IP ID (a SYN/ACK to PORT, the RST's IP ID; probes/idlescan.py)
classified with stackfacts.ip_id_class: only one incremental counter will do. Then, with another
address to spoof from (--spoof-from, else another candidate of the range that answered), four
SYN/ACKs "from" that address test whether the counter also counts packets the zombie sends
elsewhere (a global counter; Linux's per-destination counters and ID-0 RSTs fail). Activity is the
rate at which the counter moves besides our readings: idle < 1/s, light < 10/s, busy < 100/s,
too busy above (an idle scan through it would be mostly noise).

Sends only to the candidates (and, for the global test, packets with a candidate's or the
--spoof-from address as source to another candidate): run it where spoofing is allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from hostprint.errors import NeedsRoot, UsageError, have_raw_sockets


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("zombies", help="rate hosts as idle-scan zombies (global incremental IP ID, how busy)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="RANGE", help="addresses, CIDR, nmap ranges")
    p.add_argument("-iL", dest="input_list", metavar="FILE", help="candidates from a file")
    p.add_argument("--exclude", action="append", default=[], metavar="SPECS")
    p.add_argument("-p", dest="port", type=int, default=80, metavar="PORT",
                   help="port the readings go to (default 80, as nmap's -sI)")
    p.add_argument("--spoof-from", metavar="ADDR",
                   help="source address of the global-counter test (default: another candidate that answered)")
    p.add_argument("--readings", type=int, default=6, metavar="N",
                   help="IP ID readings per candidate, 50 ms apart (default 6; more measure activity better)")
    p.add_argument("-oJ", metavar="FILE", help="JSON lines, one object per candidate ('-' = stdout)")
    p.add_argument("-v", dest="verbose", action="count", default=0, help="also list candidates that did not answer")
    p.set_defaults(func=run)


def _candidates(args: argparse.Namespace) -> list[str]:
    from hostprint.commands.scan import _reachable
    from hostprint.targets import expand_targets, read_target_file, split_target_list

    specs = list(args.targets) + (read_target_file(args.input_list) if args.input_list else [])
    if not specs:
        raise UsageError("no candidates given (e.g. hostprint zombies 198.18.0.0/24)")
    excl = [x for e in args.exclude for x in split_target_list(e)]
    out = expand_targets(specs, exclude=excl)
    if not out:
        raise UsageError("every candidate was excluded")
    return _reachable(out)


async def _rate_all(cands: list[str], port: int, spoof_from: str | None, readings: int = 6) -> list:  # type: ignore[type-arg]
    from hostprint.engine.cookie import Cookie
    from hostprint.engine.link import Links
    from hostprint.probes.idlescan import rate_zombie

    links = Links()
    cookie = Cookie()
    sem = asyncio.Semaphore(64)
    try:
        async def one(a: str, spoof: str | None):  # type: ignore[no-untyped-def]
            async with sem:
                return await rate_zombie(links, a, port, spoof_from=spoof, cookie=cookie, readings=readings)

        first = await asyncio.gather(*(one(a, None) for a in cands))
        answered = [z.address for z in first if z.ids]
        out = []
        for z in first:
            spoof = spoof_from or next((a for a in answered if a != z.address), None)
            if z.usable and spoof is not None:  # the global test, one candidate at a time
                z = await one(z.address, spoof)
            elif z.usable:
                z.global_detail = "not tested: no other address to spoof from (give --spoof-from ADDR)"
            out.append(z)
        return out
    finally:
        links.close()


def _row(z) -> list[str]:  # type: ignore[no-untyped-def]
    from hostprint.stackfacts import ip_id_words

    glob = {True: "yes", False: "no", None: "-"}[z.global_counter]
    act = f"{z.activity} ({z.background_per_s:.1f}/s)" if z.background_per_s is not None else "-"
    verdict = "usable" if z.usable else f"refused: {z.reason}"
    if z.usable and z.global_counter is None:
        verdict = "usable if global (not tested)"
    return [z.address, str(z.port), ip_id_words(z.ip_id_class) if z.ids else "no answer", glob, act, verdict]


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise UsageError(f"bad -p '{args.port}': use 1-65535")
    if args.spoof_from is not None:
        import ipaddress

        try:
            ipaddress.IPv4Address(args.spoof_from)
        except ValueError:
            raise UsageError(f"bad --spoof-from '{args.spoof_from}': not an IPv4 address") from None
    cands = _candidates(args)
    if not have_raw_sockets():
        raise NeedsRoot("zombie rating sends crafted SYN/ACKs")
    if not 2 <= args.readings <= 1000:
        raise UsageError(f"bad --readings '{args.readings}': use 2-1000")
    ratings = asyncio.run(_rate_all(cands, args.port, args.spoof_from, args.readings))
    if args.oJ:
        lines = "".join(json.dumps(z.to_dict()) + "\n" for z in ratings)
        if args.oJ == "-":
            sys.stdout.write(lines)
        else:
            with open(args.oJ, "w") as f:
                f.write(lines)
    if args.oJ != "-":
        shown = [z for z in ratings if z.ids or args.verbose]
        rows = [["ADDRESS", "PORT", "IP ID", "GLOBAL", "ACTIVITY", "VERDICT"]] + [_row(z) for z in shown]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            print(" ".join(c.ljust(w) for c, w in zip(r, widths)) + " " + r[-1])
        usable = sum(z.usable for z in ratings)
        print(f"{len(cands)} candidates, {sum(bool(z.ids) for z in ratings)} answered on port {args.port}, "
              f"{usable} usable as zombies")
    return 0
