"""What a run asks of its techniques, as one typed record the commands build from their flags.

Techniques read these fields in `create()` (probes/base.py); nothing rides on the argparse
Namespace, so a technique can be driven from a test, `timing`, `amap` or the cluster runner the
same way as from `scan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hostprint.engine.rate import Timing
    from hostprint.probes.discovery import MethodSpec


@dataclass
class ScanOptions:
    timing: Timing
    #: discovery methods; empty = skip discovery (-Pn: every target is up)
    ping: list[MethodSpec] = field(default_factory=list)
    #: port scan kinds in the order asked: syn, synack, ack, window, fin, null, xmas, connect, udp
    scan_kinds: list[str] = field(default_factory=list)
    ports: dict[str, list[int]] = field(default_factory=dict)
    data_length: int = 0
    only_open: bool = False
    sequence: bool = False
    #: -O and its DBs (comma separated: hostprint, nmap, p0f, files)
    os_detect: bool = False
    os_db: str = "hostprint"
    #: --cron-os tests ("slf" letters) and their DB and listen limit
    cron_os: str | None = None
    cron_timeout: float = 60.0
    timing_db: str = "hostprint"
    timing_db_mapping: str | None = None  # Hershel DBs: class id -> label file
    #: timing tests on these ports per address instead of the first open port (`hostprint timing`)
    timing_ports: dict[str, list[int]] | None = None
    timing_full: bool = False
    #: -sV and its DBs
    service_scan: bool = False
    sv_db: str = "hostprint"
    sv_timeout: float = 20.0  # -sV: one port's whole budget (a read waits at most 3 s of it)
    version_intensity: int = 7  # nmap's 0-9: probes of higher rarity go only to the ports they name
    #: nmap's packet options: -g/--source-port, --ttl, -S, -e, -f, --host-timeout (seconds)
    source_port: int | None = None
    ttl: int | None = None
    source_addr: str | None = None
    iface: str | None = None
    fragment: bool = False
    frag_size: int = 8  # -f: 8-byte pieces (-ff 16), --mtu N: N bytes (a multiple of 8)
    host_timeout: float | None = None
    #: --traceroute: the hops to each up host
    traceroute: bool = False
    #: -sI ZOMBIE[:PORT]: the idle scan's zombie and the port its IP ID is read from (nmap's default 80)
    zombie: str | None = None
    zombie_port: int = 80
    #: enumeration after -sV (SNMP, SMB, NTP mode 6, LDAP root DSE): the SNMP communities to try
    enumerate: bool = False
    snmp_communities: list[str] = field(default_factory=lambda: ["public"])
