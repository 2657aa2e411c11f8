"""nmap's service fingerprint ("SF" block) of a port -sV could not identify, from its answers.

nmap prints one for every service that returned data but matched no rule, so the answers can be
read, compared and turned into a rule without scanning again. The layout follows nmap's (nmap book,
"Service and Application Version Detection", Community Contributions): a header
`SF-Port<port>-<PROTO>:V=<version>%D=<month>/<day>%Time=<hex epoch>%P=<platform>` followed by one
`%r(<probe>,<length hex>,"<data>")` per distinct answer (the first probe that drew it), `"` `\\` and unprintable bytes escaped as \\xHH
(space too, as nmap does), wrapped at 80 columns with `SF:` continuation lines. hostprint writes
its own version in V= and its trigger names for the probes.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable
from typing import Protocol

MAX_DATA = 1024  # bytes of each answer kept in the fingerprint (nmap keeps about as much)
WIDTH = 80


class _Answer(Protocol):
    trigger: str
    data: bytes
    tls: bool


def escape(data: bytes) -> str:
    out = []
    for c in data:
        if c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x09:
            out.append("\\t")
        elif 0x21 <= c < 0x7F and c not in (0x22, 0x5C):
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02X}")
    return "".join(out)


def fingerprint(port: int, proto: str, answers: Iterable[_Answer], *, version: str, when: float | None = None,
                tls: bool = False) -> str | None:
    """The SF block (lines joined by newlines), or None when nothing answered with data."""
    parts = []
    seen: set[tuple[bytes, bool]] = set()
    for a in answers:
        if not a.data or (a.data, a.tls) in seen:  # the same answer to another probe adds nothing
            continue
        seen.add((a.data, a.tls))
        d = a.data[:MAX_DATA]
        parts.append(f'r({a.trigger}{"/ssl" if a.tls else ""},{len(d):X},"{escape(d)}")')
    if not parts:
        return None
    t = time.time() if when is None else when
    lt = time.localtime(t)
    head = (f"SF-Port{port}-{proto.upper()}:V={version}{'%T=SSL' if tls else ''}%I=7%D={lt.tm_mon}/{lt.tm_mday}"
            f"%Time={int(t):X}%P={platform.machine()}-linux")
    text = "%".join([head, *parts]) + ";"
    first, rest = text[:WIDTH], text[WIDTH:]
    lines = [first] + ["SF:" + rest[i:i + WIDTH - 3] for i in range(0, len(rest), WIDTH - 3)]
    return "\n".join(lines)
