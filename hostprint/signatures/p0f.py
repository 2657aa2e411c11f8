"""Reader for the user's installed p0f v3 database (`p0f.fp`), read at run time, never shipped.

Why: p0f.fp carries years of community signatures for systems we cannot run here (Windows, macOS,
BSDs, printers); reading the user's own copy gives hostprint that coverage without copying the
file. The structure follows p0f docs/README §5: `classes = ...`, sections `[module:direction]`,
`label = type:class:name:flavor`, optional `sys = ...`, then `sig = ...` lines; `[mtu]` maps
MTU values to link names; `ua_os = ...` maps User-Agent tokens to OS names.
"""

from __future__ import annotations

from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.passive_sigs import Label, SignatureDB, parse_http_sig, parse_tcp_sig

DEFAULT_PATHS = ("/etc/p0f/p0f.fp", "/usr/share/p0f/p0f.fp", "/usr/local/etc/p0f.fp")


def default_path() -> str | None:
    for p in DEFAULT_PATHS:
        if Path(p).is_file():
            return p
    return None


def _ua_os(value: str) -> list[tuple[str, str]]:
    """`Linux,Windows,iOS=[iPad],...`: name alone = that token; name=[token] = token means name."""
    out = []
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        name, eq, tok = item.partition("=")
        out.append((tok.strip("[]") if eq else name, name))
    return out


def load_p0f(path: str | Path) -> SignatureDB:
    """Parse p0f.fp; a malformed line is a UsageError naming file:line."""
    try:
        text = Path(path).read_text(encoding="latin-1")
    except OSError as e:
        raise UsageError(f"cannot read p0f database {path}: {e.strerror or e}") from None
    db = SignatureDB(sources=[f"p0f.fp ({path})"])
    section = ""
    label: Label | None = None
    sys: list[str] = []
    classes = ["win", "unix", "other"]
    mtu_name: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        where = f"{path}:{n}"
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            label, sys, mtu_name = None, [], None
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise UsageError(f"{where}: expected 'name = value', got {line[:60]!r}")
        key, value = key.strip(), value.strip()
        if key == "classes":
            classes = [c.strip() for c in value.split(",") if c.strip()]
        elif key == "ua_os":
            db.ua_os += _ua_os(value)
        elif key == "label":
            if section == "mtu":
                mtu_name = value
                continue
            parts = value.split(":", 3)
            if len(parts) != 4 or parts[0] not in ("s", "g"):
                raise UsageError(f"{where}: bad label {value!r} (expected s|g:class:name:flavor)")
            cls = parts[1]
            if cls != "!" and cls not in classes:
                raise UsageError(f"{where}: label class {cls!r} not declared in 'classes'")
            label = Label(parts[0] == "g", cls, parts[2], parts[3], f"p0f.fp:{n}")
            sys = []
        elif key == "sys":
            sys = [s.strip() for s in value.split(",") if s.strip()]
        elif key == "sig":
            if section == "mtu":
                if mtu_name is None:
                    raise UsageError(f"{where}: MTU signature before any label")
                try:
                    db.mtu.setdefault(int(value), mtu_name)
                except ValueError:
                    raise UsageError(f"{where}: bad MTU {value!r}") from None
                continue
            if label is None:
                raise UsageError(f"{where}: signature before any label")
            if section == "tcp:request":
                db.syn.append(parse_tcp_sig(value, label, where))
            elif section == "tcp:response":
                db.synack.append(parse_tcp_sig(value, label, where))
            elif section == "http:request":
                db.http_request.append(parse_http_sig(value, label, where, sys))
            elif section == "http:response":
                db.http_response.append(parse_http_sig(value, label, where, sys))
            # other modules (future p0f versions) are skipped
        else:
            raise UsageError(f"{where}: unknown key {key!r}")
    return db
