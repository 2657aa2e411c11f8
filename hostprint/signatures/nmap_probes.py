"""Reader for the user's installed nmap-service-probes (used by -sV by default when present).

Read at run time from the user's nmap installation, never shipped: nmap's DB has its own licence.
Grammar (nmap's vscan file format documentation): `Probe TCP|UDP NAME q|…| [no-payload]`,
`match`/`softmatch SERVICE m|…|[is] [p/ v/ i/ h/ o/ d/ cpe:/…/]`, `ports`, `sslports`, `rarity`,
`fallback`, `totalwaitms`, `tcpwrappedms`, `Exclude`. A probe's rules also see the answers of its
fallback probes' rules; TCP probes always fall back to the NULL probe last (nmap's chain:
self, fallbacks…, NULL; UDP: self, fallbacks…).

Every probe is kept: rarity against --version-intensity is the engine's choice per port (a probe
whose `ports` list the port is sent whatever its rarity). Regexes compile on first use and the
parsed file is cached (hostprint.cache, keyed by path, size and mtime), so start-up costs a
pickle load, not 12,000 compiles.
"""

from __future__ import annotations

import re
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.app_records import (
    NULL,
    LazyRegex,
    ParseError,
    Rule,
    SignatureDB,
    Trigger,
    delimited,
    parse_match_spec,
    parse_ports,
    unescape,
)

DEFAULT_PATHS = ("/usr/share/nmap/nmap-service-probes", "/usr/local/share/nmap/nmap-service-probes")
#: nmap's defaults when a probe does not say (service_scan.h DEFAULT_SERVICEWAITMS, DEFAULT_TCPWRAPPEDMS).
DEFAULT_WAIT_MS = 5000
DEFAULT_TCPWRAPPED_MS = 2000
#: Bump when the parsed form changes (invalidates the pickle cache).
CACHE_VERSION = 4


def find() -> Path | None:
    import os

    cands = [os.path.join(os.environ["NMAPDIR"], "nmap-service-probes")] if os.environ.get("NMAPDIR") else []
    for p in (*cands, *DEFAULT_PATHS):
        if Path(p).is_file():
            return Path(p)
    return None


def _exclude(spec: str) -> set[tuple[str, int]]:
    """`Exclude T:9100-9107,U:…,53` (nmap's -p syntax; no prefix = both transports)."""
    out: set[tuple[str, int]] = set()
    protos: tuple[str, ...] = ("tcp", "udp")
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part[:2].upper() in ("T:", "U:", "S:"):
            protos = {"T": ("tcp",), "U": ("udp",), "S": ("sctp",)}[part[0].upper()]
            part = part[2:]
        for port in parse_ports(part):
            out.update((p, port) for p in protos)
    return out


def parse_text(text: str, origin: str = "nmap-service-probes") -> SignatureDB:
    db = SignatureDB()
    cur: Trigger | None = None
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
                payload, after = delimited(spec, 1)
                cur = Trigger(name, proto.lower(), unescape(payload), source="nmap",
                              fallback=() if proto == "UDP" or name == NULL else (NULL,),
                              no_payload="no-payload" in spec[after:])
                db.triggers.append(cur)
            elif word == "Exclude":
                db.exclude |= _exclude(rest)
            elif cur is None:
                raise ParseError(f"{word} before the first Probe")
            elif word in ("match", "softmatch"):
                svc, _, spec = rest.partition(" ")
                pat, flags, templates, cpes = parse_match_spec(spec)
                rf = (re.I if "i" in flags else 0) | (re.S if "s" in flags else 0)
                db.rules.append(Rule(svc, LazyRegex(pat, rf), frozenset({cur.name}), cur.proto, 0, None,
                                     templates, tuple(cpes), word == "softmatch", "nmap", n))
            elif word == "ports":
                cur.ports = parse_ports(rest)
            elif word == "sslports":
                cur.ssl_ports = parse_ports(rest)
            elif word == "rarity":
                cur.rarity = int(rest)
                if not 1 <= cur.rarity <= 9:
                    raise ParseError(f"rarity {rest} outside 1-9")
            elif word == "totalwaitms":
                cur.wait_ms = int(rest)
            elif word == "tcpwrappedms":
                cur.tcpwrapped_ms = int(rest)
            elif word == "fallback":
                fb = tuple(x.strip() for x in rest.split(",") if x.strip())
                cur.fallback = fb + ((NULL,) if cur.proto == "tcp" and NULL not in fb else ())
            else:
                raise ParseError(f"unknown directive {word!r}")
        except (ParseError, ValueError) as e:
            db.skipped.append(f"{origin}:{n}: {e}")
    # nmap's default for what the file leaves unsaid. A probe without totalwaitms keeps None: the
    # engine's answer timeout (--sv-timeout, 3 s) stands in for nmap's fixed 5 s (DEFAULT_WAIT_MS).
    for t in db.triggers:
        if t.name == NULL and t.tcpwrapped_ms is None:
            t.tcpwrapped_ms = DEFAULT_TCPWRAPPED_MS
    return db


def load(path: str | Path | None = None) -> SignatureDB:
    p = Path(path) if path else find()
    if p is None or not p.is_file():
        raise UsageError(f"--sv-db nmap: nmap-service-probes not found ({path or ', '.join(DEFAULT_PATHS)})")
    from hostprint.cache import from_file

    try:
        return from_file(str(p), "nmap-service-probes", lambda: parse_text(p.read_text(encoding="latin-1"), p.name),
                         version=CACHE_VERSION, keep=lambda db: bool(db.rules))
    except OSError as e:
        raise UsageError(f"--sv-db nmap: cannot read {p}: {e.strerror}") from None
