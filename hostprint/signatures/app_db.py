"""hostprint's own application DB: plain-text files signatures/app_*.txt.

Why our own format and not nmap's: the files must say, line by line, which specification each
trigger and rule comes from, stay small enough to review, and be loadable without nmap. The
rule syntax after `m` is nmap's (m|regex|flags p/…/ v/…/ i/ h/ o/ d/ cpe:/…/) so users who know
nmap-service-probes can write rules without learning a third language.

    trigger NAME tcp|udp|both [harmful] [anyport] [ports=80,8080] [sslports=443] [wait=MS] [rarity=N]
            [pad=N] [build=NAME] "payload" | 0xHEX
    match SERVICE [soft] [generic] [trigger=A,B] [proto=tcp|udp] [len=MIN[,MAX]] m|regex|flags [templates]
    rpc NAME PROGRAM_NUMBER      (ONC RPC programs tried on ports identified as rpc)
    exclude tcp|udp PORTS        (never probed by -sV: printers that print whatever they receive)

A rule without trigger= applies to the answer of any trigger (amap's rule). Rules are tried in
file order; the engine keeps the most specific hard match. `generic` marks a catch-all (the raw
Server header as product): any specific rule, ours or nmap's, ranks above it. `rarity` is nmap's
(1-9, default 1): a trigger goes to ports outside its `ports` only when rarity <= --version-intensity.
`pad=N` zero-pads the payload to N bytes (QUIC's 1,200-byte minimum); `build=NAME` makes the
payload per target with signatures/udp_payloads.BUILDERS[NAME] (LLMNR's reverse query of the target).
"""

from __future__ import annotations

import re
from pathlib import Path

from hostprint.signatures.app_records import (
    NULL,
    ParseError,
    Rule,
    SignatureDB,
    Trigger,
    compile_regex,
    hex_bytes,
    parse_match_spec,
    parse_ports,
    unescape,
)

HERE = Path(__file__).resolve().parent


def db_files() -> list[Path]:
    return sorted(HERE.glob("app_*.txt"))


def _payload(text: str) -> bytes:
    text = text.strip()
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise ParseError("unterminated payload string")
        return unescape(text[1:-1])
    if text.lower().startswith("0x"):
        return hex_bytes(text)
    raise ParseError("payload must be \"…\" or 0x…")


def _options(words: list[str], allowed: set[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    rest: list[str] = []
    for w in words:
        k, eq, v = w.partition("=")
        if eq and k in allowed:
            opts[k] = v
        elif not eq and w in allowed:
            opts[w] = ""
        else:
            rest.append(w)
    return opts, rest


def parse_text(text: str, origin: str = "<text>") -> SignatureDB:
    """Parse one file; bad lines are reported in db.skipped, never raised (malformed files never crash)."""
    db = SignatureDB()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            kind, _, rest = line.partition(" ")
            if kind == "trigger":
                _trigger(db, rest, origin)
            elif kind == "match":
                _match(db, rest, origin, n)
            elif kind == "exclude":
                proto, _, ports = rest.strip().partition(" ")
                if proto not in ("tcp", "udp"):
                    raise ParseError("exclude needs tcp|udp PORTS")
                db.exclude |= {(proto, p) for p in parse_ports(ports)}
            elif kind == "rpc":
                name, _, num = rest.strip().partition(" ")
                if not name or not num.strip().isdigit():
                    raise ParseError("rpc needs NAME NUMBER")
                db.rpc[int(num)] = name
            else:
                raise ParseError(f"unknown directive {kind!r}")
        except ParseError as e:
            db.skipped.append(f"{origin}:{n}: {e}")
    return db


def _trigger(db: SignatureDB, rest: str, origin: str) -> None:
    i = min([p for p in (rest.find('"'), rest.lower().find(" 0x")) if p >= 0], default=-1)
    if i < 0:
        raise ParseError("trigger without payload")
    head, payload = rest[:i].split(), _payload(rest[i:])
    if len(head) < 2:
        raise ParseError("trigger needs NAME and tcp|udp|both")
    name, proto = head[0], head[1].lower()
    if proto not in ("tcp", "udp", "both"):
        raise ParseError(f"bad transport {head[1]!r}")
    opts, extra = _options(head[2:], {"harmful", "ports", "sslports", "wait", "anyport", "rarity", "pad", "build"})
    if extra:
        raise ParseError(f"unknown trigger option {extra[0]!r}")
    try:
        wait = int(opts["wait"]) if "wait" in opts else None
        rarity = int(opts.get("rarity", "1"))
        pad = int(opts.get("pad", "0"))
    except ValueError:
        raise ParseError(f"bad wait/rarity in {' '.join(head)!r}") from None
    if not 1 <= rarity <= 9:
        raise ParseError(f"rarity {rarity} outside 1-9")
    if "build" in opts:
        from hostprint.signatures.udp_payloads import BUILDERS

        if opts["build"] not in BUILDERS:
            raise ParseError(f"unknown payload builder {opts['build']!r}")
    payload = payload + b"\0" * max(0, pad - len(payload))
    db.triggers.append(Trigger(name, proto, payload, parse_ports(opts.get("ports", "")),
                               parse_ports(opts.get("sslports", "")), "harmful" in opts, "hostprint",
                               rarity=rarity, wait_ms=wait, any_port="anyport" in opts, build=opts.get("build")))


_M_START = re.compile(r"\sm([^\w\s])")


def _match(db: SignatureDB, rest: str, origin: str, n: int) -> None:
    m = _M_START.search(" " + rest)
    if not m:
        raise ParseError("match without m<delim>regex<delim>")
    head = (" " + rest)[:m.start()].split()
    if not head:
        raise ParseError("match needs a service name")
    opts, extra = _options(head[1:], {"soft", "generic", "trigger", "proto", "len"})
    if extra:
        raise ParseError(f"unknown match option {extra[0]!r}")
    pat, flags, templates, cpes = parse_match_spec((" " + rest)[m.start() + 1:])
    rf = (re.I if "i" in flags else 0) | (re.S if "s" in flags else 0)
    lo, hi = 0, None
    if "len" in opts:
        a, _, b = opts["len"].partition(",")
        try:
            lo, hi = int(a), (int(b) if b else None)
        except ValueError:
            raise ParseError(f"bad len {opts['len']!r}") from None
    trig = frozenset(t if t != "null" else NULL for t in opts.get("trigger", "").split(",") if t)
    db.rules.append(Rule(head[0], compile_regex(pat, rf), trig, opts.get("proto", "both"), lo, hi, templates,
                         tuple(cpes), "soft" in opts, "hostprint", n, generic="generic" in opts))


def load(paths: list[Path] | None = None) -> SignatureDB:
    db = SignatureDB()
    for p in paths if paths is not None else db_files():
        db.extend(parse_text(p.read_text(encoding="utf-8"), p.name))
    return db
