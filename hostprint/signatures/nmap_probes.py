"""Optional reader for the user's installed nmap-service-probes (`--sv-db nmap`).

Read at run time from the user's nmap installation, never shipped: nmap's DB has its own licence.
Grammar (nmap's vscan file format documentation): `Probe TCP|UDP NAME q|…| [no-payload]`,
`match`/`softmatch SERVICE m|…|[is] [p/ v/ i/ h/ o/ d/ cpe:/…/]`, `ports`, `sslports`, `rarity`,
`fallback`, `totalwaitms`, `tcpwrappedms`, `Exclude`. A probe's rules also see the answers of its
fallback probes' rules; for TCP probes without `fallback` the NULL probe's rules apply too.
"""

from __future__ import annotations

import re
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.match.app import (
    NULL,
    ParseError,
    Rule,
    SignatureDB,
    Trigger,
    compile_regex,
    delimited,
    parse_match_spec,
    parse_ports,
    unescape,
)

DEFAULT_PATHS = ("/usr/share/nmap/nmap-service-probes", "/usr/local/share/nmap/nmap-service-probes")


def find() -> Path | None:
    for p in DEFAULT_PATHS:
        if Path(p).is_file():
            return Path(p)
    return None


def parse_text(text: str, origin: str = "nmap-service-probes", max_rarity: int = 7) -> SignatureDB:
    """Probes with rarity above `max_rarity` (nmap's --version-intensity, default 7) are skipped."""
    db = SignatureDB()
    cur: Trigger | None = None
    rarity: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        try:
            if word == "Probe":
                proto, name, spec = (rest.split(None, 2) + ["", ""])[:3]
                if proto not in ("TCP", "UDP") or not spec.startswith("q"):
                    raise ParseError("bad Probe line")
                payload, _ = delimited(spec, 1)
                cur = Trigger(name, proto.lower(), unescape(payload), source="nmap",
                              fallback=() if proto == "UDP" else (NULL,))
                db.triggers.append(cur)
            elif cur is None:
                if word != "Exclude":
                    raise ParseError(f"{word} before the first Probe")
            elif word in ("match", "softmatch"):
                svc, _, spec = rest.partition(" ")
                pat, flags, templates, cpes = parse_match_spec(spec)
                rf = (re.I if "i" in flags else 0) | (re.S if "s" in flags else 0)
                db.rules.append(Rule(svc, compile_regex(pat, rf), frozenset({cur.name}), cur.proto, 0, None,
                                     templates, tuple(cpes), word == "softmatch", "nmap", n))
            elif word == "ports":
                cur.ports = parse_ports(rest)
            elif word == "sslports":
                cur.ssl_ports = parse_ports(rest)
            elif word == "rarity":
                cur.rarity = int(rest)
                rarity[cur.name] = cur.rarity
            elif word == "totalwaitms":
                cur.wait_ms = int(rest)
            elif word == "fallback":
                cur.fallback = tuple(x.strip() for x in rest.split(",") if x.strip()) + \
                    ((NULL,) if cur.proto == "tcp" else ())
            elif word in ("tcpwrappedms", "Exclude"):
                pass
            else:
                raise ParseError(f"unknown directive {word!r}")
        except (ParseError, ValueError) as e:
            db.skipped.append(f"{origin}:{n}: {e}")
    db.triggers = [t for t in db.triggers if t.rarity <= max_rarity]
    return db


def load(path: str | Path | None = None, max_rarity: int = 7) -> SignatureDB:
    p = Path(path) if path else find()
    if p is None or not p.is_file():
        raise UsageError(f"--sv-db nmap: nmap-service-probes not found ({path or ', '.join(DEFAULT_PATHS)})")
    return parse_text(p.read_text(encoding="latin-1"), p.name, max_rarity)
