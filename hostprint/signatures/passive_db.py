"""hostprint's own passive signature file (`passive.txt`) and the choice of databases for a run.

Why a format of our own around p0f's field grammar: every entry must say where it comes from
(measured here, or kernel source / standard / vendor document), and a one-line-per-entry file with a
mandatory `# source:` comment makes that checkable by the loader, which refuses undocumented
entries. The signature fields themselves use p0f's documented grammar so that a user can move an
entry between this file and p0f.fp.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.passive_sigs import Label, SignatureDB, parse_http_sig, parse_tcp_sig

BUILTIN = Path(__file__).with_name("passive.txt")


def load_passive_db(path: str | Path = BUILTIN) -> SignatureDB:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read passive signature file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"passive signature file {path} is not UTF-8 text") from None
    name = "hostprint" if Path(path) == BUILTIN else str(path)
    db = SignatureDB(sources=[f"{name} ({path})"])
    source: str | None = None
    shadow: dict[tuple[str, str], str] = {}
    in_source = False  # comment lines right after '# source:' continue it
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        where = f"{path}:{n}"
        if not s:
            source, in_source = None, False
            continue
        if s.startswith("#"):
            body = s.lstrip("#").strip()
            if body.lower().startswith("source:"):
                source, in_source = body[7:].strip(), True
            elif in_source and body:
                source = f"{source} {body}"
            continue
        in_source = False
        try:
            f = shlex.split(s, comments=False)
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from None
        kind = f[0]
        if source is None:
            raise UsageError(f"{where}: entry {kind!r} has no '# source:' comment above it")
        src = f"{name}:{n} ({source})"
        if kind in ("tcp-syn", "tcp-synack"):
            if len(f) != 6 or f[1] not in ("s", "g"):
                raise UsageError(f"{where}: expected '{kind} s|g CLASS NAME \"FLAVOR\" SIG'")
            entry = parse_tcp_sig(f[5], Label(f[1] == "g", f[2], f[3], f[4], src), where)
            _refuse_shadowed(shadow, (kind, entry.text), where)
            (db.syn if kind == "tcp-syn" else db.synack).append(entry)
        elif kind in ("http-req", "http-resp"):
            if len(f) != 5 or f[1] not in ("s", "g"):
                raise UsageError(f"{where}: expected '{kind} s|g NAME \"FLAVOR\" SIG'")
            e2 = parse_http_sig(f[4], Label(f[1] == "g", "!", f[2], f[3], src), where)
            _refuse_shadowed(shadow, (kind, e2.text), where)
            (db.http_request if kind == "http-req" else db.http_response).append(e2)
        elif kind == "mtu":
            if len(f) != 3 or not f[1].isdigit():
                raise UsageError(f"{where}: expected 'mtu NUMBER \"LINK\"'")
            db.mtu.setdefault(int(f[1]), f[2])
        elif kind == "ua-os":
            if len(f) != 3:
                raise UsageError(f"{where}: expected 'ua-os \"TOKEN\" OS'")
            db.ua_os.append((f[1], f[2]))
        else:
            raise UsageError(f"{where}: unknown entry kind {kind!r}")
    return db


def _refuse_shadowed(seen: dict[tuple[str, str], str], key: tuple[str, str], where: str) -> None:
    """The same signature twice: the second could never match (the first one wins), so it is an
    error in the file, as p0f's reader treats a duplicate signature."""
    if key in seen:
        raise UsageError(f"{where}: {key[0]} signature {key[1]!r} is shadowed by the same signature at {seen[key]}")
    seen[key] = where


def resolve_db(db: str | None, p0f: str | None) -> SignatureDB:
    """--db builtin|none|PATH and --p0f-db [PATH]: our entries first (p0f's rule: the first exact
    specific match wins), then the user's p0f.fp."""
    from hostprint.signatures.p0f import default_path, load_p0f

    out = SignatureDB()
    if db in (None, "builtin", "hostprint"):
        out.extend(load_passive_db(BUILTIN))
    elif db != "none":
        if not Path(db).is_file():
            raise UsageError(f"--db {db}: no such signature file")
        out.extend(load_passive_db(db))
    if p0f is not None:
        path = p0f or default_path()
        if not path:
            raise UsageError("--p0f-db: no p0f.fp found (install p0f or give a path)")
        if not Path(path).is_file():
            raise UsageError(f"--p0f-db {path}: no such file")
        out.extend(load_p0f(path))
    return out
