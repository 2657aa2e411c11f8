"""Which application signature DBs a run uses (`--sv-db`), checked and loaded before scanning.

`hostprint` is our own DB (signatures/app_*.txt), `amap[=FILE]` amap 5.4's appdefs, `nmap[=FILE]`
the user's installed nmap-service-probes, read at run time; several are merged in the order given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.app_records import SignatureDB

NAMES = ("hostprint", "amap", "nmap")


def check_sv_db(spec: str) -> str:
    """argparse type for --sv-db: names checked before any scanning starts."""
    for s in spec.split(","):
        if s.strip().partition("=")[0] not in NAMES:
            raise argparse.ArgumentTypeError(f"bad --sv-db {spec!r}: use hostprint, amap[=FILE] or nmap[=FILE]")
    return spec


def sv_timeout(text: str) -> float:
    """argparse type for --sv-timeout (seconds, 0-240)."""
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 240:
        raise argparse.ArgumentTypeError(f"bad --sv-timeout {text!r}: use 0-240 seconds")
    return v


def version_intensity(text: str) -> int:
    """argparse type for --version-intensity (nmap's 0-9)."""
    if not (text.isdigit() and 0 <= int(text) <= 9):
        raise argparse.ArgumentTypeError(f"bad --version-intensity {text!r}: use 0-9")
    return int(text)


def default_sv_db() -> str:
    """-sV's DBs when --sv-db is not given: ours, plus nmap's probe file where nmap is installed."""
    from hostprint.signatures import nmap_probes

    return "hostprint,nmap" if nmap_probes.find() else "hostprint"


def sv_db(spec: str) -> SignatureDB:
    """--sv-db: 'hostprint', 'amap[=FILE]', 'nmap[=FILE]', comma separated, merged in that order."""
    from hostprint.signatures import amap as amap_db
    from hostprint.signatures import app_db, nmap_probes

    db = SignatureDB()
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if not specs:
        raise UsageError(f"bad --sv-db {spec!r}: use hostprint, amap[=FILE] or nmap[=FILE]")
    for s in specs:
        name, _, arg = s.partition("=")
        if name == "hostprint":
            db.extend(app_db.load())
        elif name == "amap":
            db.extend(_usable(amap_db.load(arg or default_amap_dir()), s))
        elif name == "nmap":
            db.extend(_usable(nmap_probes.load(arg or None), s))
        else:
            raise UsageError(f"bad --sv-db {s!r}: use hostprint, amap[=FILE] or nmap[=FILE]")
    return db


def _usable(part: SignatureDB, spec: str) -> SignatureDB:
    """A DB file that yields no trigger and no rule (random bytes, another format) is refused before
    scanning instead of quietly identifying nothing."""
    if not part.rules and not part.triggers:
        first = f"; first problem: {part.skipped[0][:120]}" if part.skipped else ""
        raise UsageError(f"--sv-db {spec}: no probes or match rules in it ({len(part.skipped)} lines not "
                         f"understood{first})")
    return part


def default_amap_dir() -> str:
    for d in ("/usr/share/amap", "/usr/local/share/amap", "/etc/amap"):
        if Path(d, "appdefs.resp").is_file():
            return d
    raise UsageError("--sv-db amap: no appdefs files found (give amap=DIR or -D FILE)")
