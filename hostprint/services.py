"""Port <-> service-name table, read from the user's installed files at run time.

Why not ship a table: nmap-services is under the Nmap license and the port/frequency
data belongs to the nmap project, so we read whatever the user has installed
(Debian `nmap-common`: /usr/share/nmap/nmap-services, `name port/proto frequency`).
Without nmap we fall back to /etc/services (Debian `netbase`, IANA assignments), which
has names and aliases but no open-frequency data, so "top ports" becomes a weaker
"well-known ports in port order" list. Missing or unreadable files give an empty table,
never an error: a name lookup then simply fails with the caller's own message.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass, field

PROTOCOLS: tuple[str, ...] = ("tcp", "udp", "sctp")


def _nmap_services_candidates() -> list[str]:
    """nmap honours $NMAPDIR before its compiled-in data dirs; so do we."""
    paths = []
    if os.environ.get("NMAPDIR"):
        paths.append(os.path.join(os.environ["NMAPDIR"], "nmap-services"))
    paths += ["/usr/share/nmap/nmap-services", "/usr/local/share/nmap/nmap-services"]
    return paths


ETC_SERVICES = "/etc/services"


@dataclass
class ServiceTable:
    """One parsed services file. `ranked[proto]` is most-frequently-open first when the
    file carries frequencies (nmap), else ascending port order (/etc/services)."""

    source: str | None = None
    has_frequencies: bool = False
    by_port: dict[tuple[int, str], str] = field(default_factory=dict)
    by_name: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    ranked: dict[str, list[int]] = field(default_factory=dict)

    def name(self, port: int, proto: str) -> str | None:
        return self.by_port.get((port, proto))

    def ports_named(self, pattern: str, proto: str) -> list[int]:
        """Ports whose name (or /etc/services alias) matches; `*` and `?` glob like nmap's -p."""
        pattern = pattern.lower()
        if not any(c in pattern for c in "*?["):
            return sorted(self.by_name.get((pattern, proto), ()))
        found: set[int] = set()
        for (name, p), ports in self.by_name.items():
            if p == proto and fnmatch.fnmatchcase(name, pattern):
                found.update(ports)
        return sorted(found)

    def knows_name(self, pattern: str) -> bool:
        return any(self.ports_named(pattern, p) for p in PROTOCOLS)


def parse_services(text: str, source: str | None = None) -> ServiceTable:
    """Parse nmap-services or /etc/services text; the third column decides which
    (a float is nmap's open-frequency, anything else is an /etc/services alias)."""
    table = ServiceTable(source=source)
    freq: dict[tuple[int, str], float] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or "/" not in fields[1]:
            continue
        port_s, _, proto = fields[1].partition("/")
        proto = proto.lower()
        if proto not in PROTOCOLS or not port_s.isascii() or not port_s.isdigit():
            continue
        port = int(port_s)
        if port > 65535:
            continue
        names = [fields[0].lower()]
        rest = fields[2:]
        if rest:
            try:
                freq[(port, proto)] = float(rest[0])
                table.has_frequencies = True
            except ValueError:
                names += [alias.lower() for alias in rest]
        if names[0] != "unknown":  # nmap's placeholder for "no name": not a name
            table.by_port.setdefault((port, proto), names[0])
        for name in names:
            table.by_name.setdefault((name, proto), set()).add(port)
    for proto in PROTOCOLS:
        ports = sorted({p for (p, pr) in list(table.by_port) + list(freq) if pr == proto})
        if table.has_frequencies:
            ports.sort(key=lambda p: -freq.get((p, proto), 0.0))  # stable: ties stay in port order
        table.ranked[proto] = [p for p in ports if p != 0]
    return table


def load_table(paths: list[str] | None = None) -> ServiceTable:
    """First readable file of `paths` (default: nmap-services, then /etc/services)."""
    if paths is None:
        paths = _nmap_services_candidates() + [ETC_SERVICES]
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return parse_services(fh.read(), source=path)
        except OSError:
            continue
    return ServiceTable()


def _cached_load(paths: list[str]) -> ServiceTable:
    """load_table through the file cache: parsing nmap-services takes ~0.3 s of a 1–2 s scan."""
    import os

    from hostprint.cache import from_file

    for path in paths:
        if os.path.exists(path):
            table = from_file(path, "services", functools.partial(load_table, [path]))
            if isinstance(table, ServiceTable) and table.source is not None:
                return table
    return ServiceTable()


@functools.cache
def default_table() -> ServiceTable:
    """Loaded once, on first use: most runs never need a service name."""
    return _cached_load(_nmap_services_candidates() + [ETC_SERVICES])


def service_name(port: int, proto: str) -> str | None:
    """nmap-style name for a port (ssh, http, microsoft-ds ...), None when unknown."""
    return default_table().name(port, proto.lower())
