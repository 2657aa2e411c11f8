"""The paragraph format of hostprint's small knowledge DBs (families, relays, distributions).

One entry per paragraph: a first line `Kind NAME`, then `Key value` lines, and at least one
`Source documented: …` (source code, RFC, vendor documentation) or `Source measured: …` (what was
measured here, how and when) line. Why a loader of its own: every fact must say where it comes
from, so an entry without a Source line is refused, and so is an entry that an earlier one fully
shadows (the same kind and name again: the later one could never be used), as p0f's loader does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hostprint.errors import UsageError


@dataclass
class Record:
    kind: str
    name: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    where: str = ""

    def one(self, key: str, default: str | None = None) -> str | None:
        vals = self.fields.get(key)
        return vals[0] if vals else default

    def all(self, key: str) -> list[str]:
        return list(self.fields.get(key, []))


def parse_records(text: str, origin: str, kinds: frozenset[str], keys: frozenset[str]) -> list[Record]:
    """Records of the given kinds; UsageError naming file:line for anything malformed."""
    out: list[Record] = []
    seen: dict[tuple[str, str], str] = {}
    cur: Record | None = None

    def close() -> None:
        nonlocal cur
        if cur is not None:
            if not cur.sources:
                raise UsageError(f"{cur.where}: {cur.kind} {cur.name!r} has no 'Source documented:' or "
                                 "'Source measured:' line")
            key = (cur.kind, cur.name)
            if key in seen:
                raise UsageError(f"{cur.where}: {cur.kind} {cur.name!r} is shadowed by the entry at {seen[key]} "
                                 "(it could never be used)")
            seen[key] = cur.where
            out.append(cur)
        cur = None

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{origin}:{n}"
        if not line:
            close()
            continue
        if line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word in kinds:
            close()
            if not rest:
                raise UsageError(f"{where}: {word} needs a name")
            cur = Record(word, rest, where=where)
            continue
        if cur is None:
            raise UsageError(f"{where}: {line[:40]!r} outside an entry (entries start with {'/'.join(sorted(kinds))})")
        if word == "Source":
            kind, _, what = rest.partition(":")
            if kind not in ("documented", "measured") or not what.strip():
                raise UsageError(f"{where}: use 'Source documented: …' or 'Source measured: …'")
            cur.sources.append(f"{kind}: {what.strip()}")
        elif word in keys:
            cur.fields.setdefault(word, []).append(rest)
        else:
            raise UsageError(f"{where}: unknown key {word!r} (known: {', '.join(sorted(keys))}, Source)")
    close()
    return out


def load_records(path: Path, kinds: frozenset[str], keys: frozenset[str]) -> list[Record]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    return parse_records(text, path.name, kinds, keys)
