"""The RST guard: an nftables table of our own that keeps the local kernel quiet.

When we craft a SYN from a raw socket, the target's SYN-ACK reaches a kernel that knows no such
connection and answers with an RST, which kills the half-open state that the timing and stack
tests need to observe. The guard drops TCP packets from the guarded targets to our reserved
source-port range at the interfaces' netdev ingress hook (and, for routes it was not told about,
in the inet input hook), IPv4 and IPv6 alike (one address set per family in the same tables): the IP and TCP stacks never see them, so nothing is sent back, while our
AF_PACKET receiver, which taps before ingress, still captures them. Dropping before IP input is the
cheapest of the measured options (../shared/reference/packet-io.md §6) and, in a 4.2 M-probe scan,
saved our own kernel ~10–15 % of the time it spent on replies.

One table per guard, named hostprint_<pid>_<start>_<n>: the owner's PID, its kernel start time
(field 22 of /proc/<pid>/stat, clock ticks since boot) and a counter. Removed on normal exit,
exceptions, Ctrl-C and SIGTERM (the CLI turns SIGTERM into SystemExit); the removal holds
SIGINT/SIGTERM/SIGHUP until `nft` has answered and runs `nft` outside the terminal's process group,
so a second Ctrl-C cannot cut it short (engine/signals.py), and an atexit hook retries a removal an
exception skipped. A table whose owner is gone is stale: its PID runs no more, or runs a process
that started at another time (the PID was reused; PID 1 in a container). Stale tables are removed
at every start and by `hostprint guard --clean` (the SIGKILL case, without waiting for a next run).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from hostprint.engine.signals import deferred, subprocess_kwargs
from hostprint.errors import UsageError

_PREFIX = "hostprint_"
# hostprint_<pid>_<start>[_<n>]; tables of hostprint <= 0.1 carry a wall-clock number as <start>
_NAME_RE = re.compile(r"table (inet|netdev) (hostprint_(\d+)_(\d+)(?:_\d+)?)\b")
CLEAN_HINT = "run `hostprint guard --clean` as root to remove stale guard tables"
_count = itertools.count(1)


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()  # comm may hold spaces and parentheses
    try:
        return None if rest[0] in ("Z", "X") else int(rest[19])
    except (IndexError, ValueError):
        return None


def _nft(script: str, check: bool = True) -> subprocess.CompletedProcess:
    if not shutil.which("nft"):
        raise UsageError("the RST guard needs nftables (Debian package nftables): nft not found")
    return subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True, check=False,
                          **subprocess_kwargs())  # type: ignore[call-overload]


@dataclass(frozen=True)
class GuardTable:
    family: str
    name: str
    pid: int
    start: int

    @property
    def alive(self) -> bool:
        """Its owner still runs: same PID *and* same start time (a reused PID is another process)."""
        return proc_start_time(self.pid) == self.start


def list_tables() -> list[GuardTable]:
    """Every guard table of this network namespace (needs CAP_NET_ADMIN to see them)."""
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, **subprocess_kwargs())  # type: ignore[call-overload]
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["nft failed"])[-1]
        raise UsageError(f"cannot list nftables tables: {msg}")
    return [GuardTable(m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) for m in _NAME_RE.finditer(r.stdout)]


def remove_stale(*, strict: bool = False) -> list[str]:
    """Delete guard tables whose owner no longer runs; returns their names. A table that cannot be
    deleted is reported on stderr with the hint to run `hostprint guard --clean` (UsageError with
    strict=True, as `guard --clean` wants)."""
    removed: list[str] = []
    if not shutil.which("nft"):
        return removed
    try:
        tables = list_tables()
    except UsageError:
        if strict:
            raise
        return removed
    me = os.getpid()
    for t in tables:
        if t.pid == me or t.alive:
            continue
        with deferred():
            r = _nft(f"delete table {t.family} {t.name}\n")
        if r.returncode == 0:
            removed.append(t.name)
            continue
        msg = (r.stderr.strip().splitlines() or ["nft failed"])[-1]
        line = f"stale RST guard table {t.family} {t.name} (process {t.pid} is gone) could not be removed: {msg}"
        if strict:
            raise UsageError(line)
        print(f"hostprint: warning: {line}; it drops replies to hostprint's probe ports; {CLEAN_HINT}",
              file=sys.stderr)
    return removed


class RstGuard:
    """Context manager. `guard(addr)` adds a target; replies from guarded targets to our source
    port range never reach the local TCP stack."""

    def __init__(self, sport_lo: int, sport_hi: int, ifaces: list[str] | tuple[str, ...] = ()):
        pid = os.getpid()
        self.name = f"{_PREFIX}{pid}_{proc_start_time(pid) or 0}_{next(_count)}"
        self.sport_lo, self.sport_hi = sport_lo, sport_hi
        self.ifaces = [i for i in dict.fromkeys(ifaces) if re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", i)]
        self.active = False
        self.guarded: set[str] = set()

    def __enter__(self) -> "RstGuard":
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> None:
        remove_stale()
        ports = f"tcp dport {self.sport_lo}-{self.sport_hi} drop"
        # One set per family in the same tables: IPv6 targets go to targets6 (see guard()).
        rule = f"ip saddr @targets {ports}\n    ip6 saddr @targets6 {ports}"
        sets = ("  set targets { type ipv4_addr; flags interval; }\n"
                "  set targets6 { type ipv6_addr; flags interval; }\n")
        script = (
            f"table inet {self.name} {{\n{sets}"
            f"  chain input {{ type filter hook input priority -300; policy accept;\n    {rule}\n  }}\n"
            f"}}\n"
        )
        if self.ifaces:
            chains = "".join(
                f"  chain in{i} {{ type filter hook ingress device \"{dev}\" priority -500; policy accept;\n    {rule}\n  }}\n"
                for i, dev in enumerate(self.ifaces))
            script += f"table netdev {self.name} {{\n{sets}{chains}}}\n"
        with deferred():  # installed and known to be installed, or neither
            r = _nft(script)
            if r.returncode == 0:
                self.active = True
                atexit.register(self.remove)
        if r.returncode != 0:
            msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "nft failed"
            raise UsageError(f"cannot install the RST guard table {self.name}: {msg} ({CLEAN_HINT})")

    def guard(self, *addrs: str) -> None:
        """IPv4 and IPv6 addresses (or prefixes) alike; each goes to its family's set."""
        new = [a for a in addrs if a not in self.guarded]
        if not new or not self.active:
            return
        for setname, family in (("targets", [a for a in new if ":" not in a]), ("targets6", [a for a in new if ":" in a])):
            for i in range(0, len(family), 4096):
                chunk = ", ".join(family[i:i + 4096])
                script = f"add element inet {self.name} {setname} {{ {chunk} }}\n"
                if self.ifaces:
                    script += f"add element netdev {self.name} {setname} {{ {chunk} }}\n"
                _nft(script)
        self.guarded.update(new)

    def remove(self) -> None:
        """Delete the table. Signals wait until nft has answered (a second Ctrl-C cannot cut the
        removal short); `active` stays set until the table is gone, so the atexit hook retries a
        removal that failed or never ran."""
        if not self.active:
            return
        with deferred():
            problem = None
            for family in ("inet", "netdev") if self.ifaces else ("inet",):
                r = _nft(f"delete table {family} {self.name}\n")
                if r.returncode != 0 and "No such file" not in r.stderr:
                    problem = (r.stderr.strip().splitlines() or ["nft failed"])[-1]
            if problem is None:
                self.active = False
            else:
                print(f"hostprint: warning: cannot remove RST guard table {self.name}: {problem}; {CLEAN_HINT}",
                      file=sys.stderr)
