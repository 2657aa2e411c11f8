"""Reader for amap's appdefs.trig / appdefs.resp / appdefs.rpc, read verbatim from the user's files.

Why: amap's DB is the reference point of issue 5 and users have their own appdefs files. Facts
used (from amap 5.4's file headers and parser, summarised in the shared reference notes):
- trig: `NAME:[PORTS]:[tcp|udp|both]:0|1:"…"|0x…`; first char of the protocol decides; only the
  escapes \\\\ \\n \\r \\t are legal in quoted triggers; the part before the payload is lower-cased.
- resp: `NAME:[TRIGGERS]:[PROTO]:[MIN[,MAX]]:REGEX`, regex compiled caseless|multiline|dotall;
  empty length = 0..1025; one number = exact length (so amap's own "26-50" means exactly 26).
- rpc: `NAME:::0:PROGRAM_NUMBER`.
The older response form (before amap 3.0 made responses regexes) is read as: value starting with
`^` = response starts with the literal, `/` = contains it; the literal is "…", 0x… or bare text.
That grammar is inferred (amap's changelog and amapcrap's output), not verified against a release.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures import app_records as R

AMAP_FLAGS = re.I | re.M | re.S
MAX_LINE = 1024


def _fields(line: str, n: int) -> list[str]:
    parts = line.split(":", n - 1)
    if len(parts) != n:
        raise R.ParseError(f"expected {n} ':'-separated fields")
    return parts


def _proto(s: str) -> str:
    s = s.strip().lower()
    return {"": "both", "b": "both", "t": "tcp", "u": "udp"}.get(s[:1], "?")


def _amap_string(s: str) -> bytes:
    """amap's quoted trigger string: only \\\\ \\n \\r \\t are escapes (anything else is fatal in amap)."""
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\":
            e = s[i + 1:i + 2]
            if e not in ("\\", "n", "r", "t"):
                raise R.ParseError(f"illegal escape \\{e} in trigger string")
            out += {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t"}[e]
            i += 2
        else:
            out += s[i].encode("latin-1")
            i += 1
    return bytes(out)


def _payload(s: str) -> bytes:
    s = s.strip()
    if s.startswith('"'):
        if not s.endswith('"') or len(s) < 2:
            raise R.ParseError("unterminated trigger string")
        return _amap_string(s[1:-1])
    if s.lower().startswith("0x"):
        return R.hex_bytes(s)
    raise R.ParseError('trigger must be "…" or 0x…')


def _lines(text: str, origin: str, db: R.SignatureDB) -> Iterator[tuple[int, str]]:
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if len(line) > MAX_LINE:
            db.skipped.append(f"{origin}:{n}: line longer than {MAX_LINE} bytes")
            continue
        if not line.strip() or line.startswith("#") or ":" not in line:
            continue
        yield n, line


def parse_trig(text: str, origin: str = "appdefs.trig") -> R.SignatureDB:
    db = R.SignatureDB()
    for n, line in _lines(text, origin, db):
        try:
            name, ports, proto, harm, payload = _fields(line, 5)
            name, ports, proto, harm = (x.strip().lower() for x in (name, ports, proto, harm))
            if not name or len(name) > 32:
                raise R.ParseError("name empty or longer than 32")
            p = _proto(proto)
            if p == "?":
                raise R.ParseError(f"bad protocol {proto!r}")
            if harm not in ("0", "1"):
                raise R.ParseError(f"harmful must be 0 or 1, not {harm!r}")
            try:
                pset = R.parse_ports(ports)
            except R.ParseError:
                pset = frozenset()  # amap ignores this field
            db.triggers.append(R.Trigger(name, p, _payload(payload), pset, frozenset(), harm == "1", "amap"))
        except R.ParseError as e:
            db.skipped.append(f"{origin}:{n}: {e}")
    return db


def _legacy_regex(value: str) -> bytes:
    """Older form: ^literal (starts with) or /literal (contains); literal "…", 0x… or bare."""
    mode, lit = value[:1], value[1:]
    if mode not in ("^", "/"):
        mode, lit = "/", value
    lit = lit.strip()
    if lit.startswith('"') and lit.endswith('"') and len(lit) >= 2:
        data = _amap_string(lit[1:-1])
    elif lit.lower().startswith("0x"):
        data = R.hex_bytes(lit)
    else:
        data = lit.encode("latin-1")
    return (b"\\A" if mode == "^" else b"") + re.escape(data)


def parse_resp(text: str, origin: str = "appdefs.resp", legacy: bool | None = None) -> R.SignatureDB:
    """legacy=None: decide from the header (amap 3.0+ files start with '###V:')."""
    db = R.SignatureDB()
    if legacy is None:
        legacy = not text.lstrip().startswith("###V:")
    for n, line in _lines(text, origin, db):
        try:
            name, trigs, proto, length, value = _fields(line, 5)
            name = "".join(name.split()).lower()
            if not name or len(name) > 32:
                raise R.ParseError("name empty or longer than 32")
            p = _proto("".join(proto.split()))
            if p == "?":
                raise R.ParseError(f"bad protocol {proto!r}")
            length = "".join(length.split())
            lo, hi = 0, 1025
            if length:
                a, _, b = length.partition(",")
                lo = _atoi(a)
                hi = _atoi(b) if b else lo
            tset = frozenset(t for t in "".join(trigs.split()).lower().split(",") if t)
            pat = _legacy_regex(value) if legacy else value.encode("latin-1")
            # amap's secondary id convention "proto-product": the base protocol is the service name.
            db.rules.append(R.Rule(name, R.compile_regex(pat, AMAP_FLAGS), tset, p, lo, hi, {}, (), False, "amap", n))
        except R.ParseError as e:
            db.skipped.append(f"{origin}:{n}: {e}")
    return db


def _atoi(s: str) -> int:
    """C atoi: leading digits only ('26-50' -> 26), as amap's parser does."""
    m = re.match(r"\s*(\d+)", s)
    return int(m.group(1)) if m else 0


def parse_rpc(text: str, origin: str = "appdefs.rpc") -> R.SignatureDB:
    db = R.SignatureDB()
    for n, line in _lines(text, origin, db):
        try:
            name, _p, _pr, _h, num = _fields(line, 5)
            db.rpc[int(num.strip())] = name.strip().lower()
        except (R.ParseError, ValueError) as e:
            db.skipped.append(f"{origin}:{n}: {e}")
    return db


def load(base: str | Path) -> R.SignatureDB:
    """`base` = path without extension (amap -D FILE) or a directory holding appdefs.*."""
    b = Path(base)
    if b.is_dir():
        b = b / "appdefs"
    files = {ext: Path(str(b) + "." + ext) for ext in ("trig", "resp", "rpc")}
    for ext in ("trig", "resp"):
        if not files[ext].is_file():
            raise UsageError(f"amap definitions: {files[ext]} not found (from {base!s})")
    db = R.SignatureDB()
    db.extend(parse_trig(files["trig"].read_text(encoding="latin-1"), files["trig"].name))
    db.extend(parse_resp(files["resp"].read_text(encoding="latin-1"), files["resp"].name))
    if files["rpc"].is_file():
        db.extend(parse_rpc(files["rpc"].read_text(encoding="latin-1"), files["rpc"].name))
    return db
