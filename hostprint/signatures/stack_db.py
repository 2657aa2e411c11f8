"""Reader for hostprint's own stack DB (signatures/stack/*.txt).

Why our own DB next to nmap-os-db: nmap's DB describes machines (thousands of prints, one per
submission) and stops at the kernels its submitters ran, so a newer kernel lands on the nearest old
print ("Linux 5.3 - 5.4" for 6.18). Our entries describe *classes* (a family and generation), keep
only the attributes the whole class agrees on, and say where each fact comes from, so a kernel newer
than any entry still falls into its family and generation, and a reader can check every claim.

Format (see the header of stack/linux.txt): `Stack NAME` starts an entry; `Class vendor | family |
generation | device type`, `CPE cpe:/…`, `Source documented|measured: …` lines; then test lines in
nmap's second-generation notation with nmap's expression grammar (`|`, `A-B`, `>X`, `<X`), because
that is what hostprint's -O probes measure. `weights.txt` holds the per-attribute points. Entries
are returned as nmap_os_db.OsDb/Fingerprint so one matcher scores every DB.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.nmap_os_db import TESTS, Fingerprint, OsClass, OsDb, parse_test_line

DB_DIR = Path(__file__).with_name("stack")
EXTRA_TESTS = ("XI",)  # ours: the xprobe2-style ICMP view, when an entry describes it
#: The IPv6 class DB (-O over IPv6, probes/stack6.py): same format, IPv6's tests.
DB6_DIR = Path(__file__).with_name("stack6")
TESTS6 = ("SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE1", "IE2", "NS")
_ALT = re.compile(r"^(>|<)?[0-9A-Za-z+*]*(-[0-9A-F]+)?$")


def _check_expr(expr: str, where: str) -> None:
    for alt in expr.split("|"):
        if alt and not _ALT.match(alt):
            raise UsageError(f"{where}: bad expression {alt!r}")


def parse(text: str, source: str, points: dict[str, dict[str, str]] | None = None,
          tests: tuple[str, ...] | None = None) -> list[Fingerprint]:
    """Entries of one file; `tests` = the test names allowed (default: IPv4's, nmap's and XI)."""
    allowed = tests if tests is not None else (*TESTS, *EXTRA_TESTS)
    prints: list[Fingerprint] = []
    cur: Fingerprint | None = None

    def done(fp: Fingerprint | None) -> None:
        if fp is None:
            return
        if not fp.classes:
            raise UsageError(f"{source}:{fp.line}: stack entry {fp.name!r} has no Class line")
        if not fp.sources:
            raise UsageError(f"{source}:{fp.line}: stack entry {fp.name!r} has no Source line")
        prints.append(fp)

    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("Source") else raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if key == "Weights":
            continue
        if key == "Stack":
            done(cur)
            cur = Fingerprint(rest, line=no, source=source)
            continue
        t = parse_test_line(line)
        if cur is None:
            if t is not None and points is not None:
                points[t[0]] = t[1]
                continue
            raise UsageError(f"{source}:{no}: {key!r} outside a Stack entry")
        if key == "Class":
            parts = [p.strip() for p in rest.split("|")]
            if len(parts) != 4 or not parts[1]:
                raise UsageError(f"{source}:{no}: Class needs 'vendor | family | generation | device type': {rest!r}")
            cur.classes.append(OsClass(*parts))
        elif key == "CPE":
            cur.cpes.append(rest.split()[0])
        elif key == "Source":
            kind = rest.split(":", 1)[0]
            if kind not in ("documented", "measured"):
                raise UsageError(f"{source}:{no}: Source must start with 'documented:' or 'measured:', got {kind!r}")
            cur.sources.append(rest)
        elif t is not None:
            name, attrs = t
            if name not in allowed:
                raise UsageError(f"{source}:{no}: unknown test {name!r}")
            for a, v in attrs.items():
                _check_expr(v, f"{source}:{no}: {name}.{a}")
            cur.tests[name] = attrs
        else:
            raise UsageError(f"{source}:{no}: cannot read {key!r}")
    done(cur)
    return prints


def load(directory: str | Path | None = None, extra: list[str] | None = None,
         tests: tuple[str, ...] | None = None) -> OsDb:
    """All entries of the shipped DB (every *.txt beside weights.txt), plus the user's own files
    (`tests`: the test names the DB may use, IPv6's for DB6_DIR)."""
    d = Path(directory) if directory else DB_DIR
    if tests is None and d == DB6_DIR:
        tests = TESTS6
    points: dict[str, dict[str, str]] = {}
    wfile = d / "weights.txt"
    if wfile.exists():
        parse(wfile.read_text(encoding="utf-8"), str(wfile), points, tests)
    prints: list[Fingerprint] = []
    files = sorted(p for p in d.glob("*.txt") if p.name != "weights.txt") + [Path(x) for x in (extra or [])]
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read stack DB {f}: {e.strerror}") from None
        name = (f"{d.name}/{f.name}" if d == DB6_DIR else f.name) if f.parent == d else str(f)
        prints.extend(parse(text, name, tests=tests))  # weights only from weights.txt
    if not prints:
        raise UsageError(f"no Stack entries in {d}")
    refuse_shadowed(prints)
    return OsDb(points, prints, "hostprint stack DB")


def refuse_shadowed(prints: list[Fingerprint]) -> None:
    """An entry whose test lines are the same as an earlier entry's can never be the better match
    (ties go to the earlier one): refuse it, as p0f refuses a duplicate signature."""
    seen: dict[tuple[tuple[str, tuple[tuple[str, str], ...]], ...], Fingerprint] = {}
    for fp in prints:
        key = tuple(sorted((t, tuple(sorted(a.items()))) for t, a in fp.tests.items()))
        first = seen.get(key)
        if first is not None:
            raise UsageError(f"{fp.source}:{fp.line}: stack entry {fp.name!r} has the same tests as {first.name!r} "
                             f"({first.source}:{first.line}), which shadows it")
        seen[key] = fp


def user_file(name: str = "stack.txt") -> str | None:
    """~/.config/hostprint/stack.txt (stack6.txt for IPv6), when the user keeps entries of their own."""
    p = os.path.join(os.path.expanduser("~"), ".config", "hostprint", name)
    return p if os.path.exists(p) else None
