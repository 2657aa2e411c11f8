"""Port specifications in nmap's -p syntax, and --top-ports.

Grammar (nmap's): comma-separated items; an item is `N`, `N-M`, `N-`, `-M`, `-` or a
service name (globs `*`/`?` allowed). `T:`, `U:`, `S:` switch the protocol for that
item and every following one until the next prefix. Open ranges follow nmap: the low
end defaults to 1 (so `-p-` is 1-65535) and port 0 is only included when written.
"""

from __future__ import annotations

import re

from hostprint.errors import UsageError
from hostprint.services import PROTOCOLS, ServiceTable, default_table

MAX_PORT = 65535
_PREFIXES = {"t": "tcp", "u": "udp", "s": "sctp"}
_NUM = re.compile(r"[0-9]+", re.ASCII)
_RANGE = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9_.*?+-]+", re.ASCII)


def show_token(token: str, limit: int = 120) -> str:
    """A token as it can appear inside a one-line error message."""
    shown = token if token.isprintable() else token.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _bad(token: str, why: str) -> UsageError:
    return UsageError(f"bad port spec '{show_token(token)}': {why}")


def _port(text: str, item: str) -> int:
    if len(text) > 5 or int(text) > MAX_PORT:
        raise _bad(item, f"port out of range 0-{MAX_PORT}")
    return int(text)


def _item_ports(item: str, protos: tuple[str, ...], table: ServiceTable | None) -> dict[str, range | list[int]]:
    if _NUM.fullmatch(item):
        n = _port(item, item)
        return {p: range(n, n + 1) for p in protos}
    m = _RANGE.fullmatch(item)
    if m:
        lo = _port(m[1], item) if m[1] else 1
        hi = _port(m[2], item) if m[2] else MAX_PORT
        if lo > hi:
            raise _bad(item, f"range is reversed ({lo} > {hi})")
        return {p: range(lo, hi + 1) for p in protos}
    if not _NAME.fullmatch(item) or not any(c.isalpha() or c in "*?" for c in item):
        raise _bad(item, "not a port, range or service name")
    table = table or default_table()  # loaded only when a service name is used (0.3 s to parse)
    named: dict[str, range | list[int]] = {p: table.ports_named(item, p) for p in protos}
    if any(named.values()):
        return named
    if table.knows_name(item):
        raise _bad(item, f"no {'/'.join(protos)} port has this service name")
    if table.source is None:
        raise _bad(item, "unknown service name (no nmap-services or /etc/services found)")
    raise _bad(item, "unknown service name")


def _parse(spec: str, protos: tuple[str, ...], table: ServiceTable | None) -> dict[str, list[int]]:
    """`protos` are the protocols an unprefixed item applies to."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(spec if isinstance(spec, str) else repr(spec), "empty")
    found: dict[str, set[int]] = {p: set() for p in PROTOCOLS}
    current = protos
    for raw in spec.split(","):
        item = raw.strip()
        if len(item) >= 2 and item[1] == ":" and item[0].lower() in _PREFIXES:
            current = (_PREFIXES[item[0].lower()],)
            item = item[2:].strip()
        if not item:
            raise _bad(spec, "empty item")
        for proto, ports in _item_ports(item, current, table).items():
            found[proto].update(ports)
    return {p: sorted(v) for p, v in found.items()}


def _check_proto(proto: str) -> str:
    if proto not in PROTOCOLS:
        raise UsageError(f"bad protocol '{show_token(str(proto))}': expected one of {', '.join(PROTOCOLS)}")
    return proto


def parse_ports(spec: str, *, default_proto: str = "tcp", table: ServiceTable | None = None) -> dict[str, list[int]]:
    """{"tcp": [...], "udp": [...], "sctp": [...]}, each sorted and unique (possibly empty)."""
    return _parse(spec, (_check_proto(default_proto),), table)


def exclude_ports(ports: dict[str, list[int]], spec: str, *, table: ServiceTable | None = None) -> dict[str, list[int]]:
    """`ports` minus --exclude-ports `spec`. As in nmap, an unprefixed exclusion removes
    the port from every protocol (excluding 53 should not leave U:53 scanned)."""
    drop = {p: set(v) for p, v in _parse(spec, PROTOCOLS, table).items()}
    return {p: [n for n in ports.get(p, ()) if n not in drop.get(p, ())] for p in (*PROTOCOLS, *ports) if p in ports or p in drop}


def top_ports(n: int, proto: str = "tcp", *, table: ServiceTable | None = None) -> list[int]:
    """The `n` most frequently open ports, ascending. Ranking comes from nmap-services
    open frequencies; with only /etc/services it is the assigned ports in port order
    (a weaker guess). Past the end of the table the remaining ports fill in ascending,
    so n=65535 is every port 1-65535."""
    _check_proto(proto)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PORT:
        raise UsageError(f"bad --top-ports value '{show_token(str(n))}': out of range 1-{MAX_PORT}")
    ranked = (table or default_table()).ranked.get(proto, [])
    chosen = ranked[:n]
    if len(chosen) < n:
        have = set(chosen)
        chosen += [p for p in range(1, MAX_PORT + 1) if p not in have][: n - len(chosen)]
    return sorted(chosen)
