"""The RST guard: an nftables table of our own that keeps the local kernel quiet.

When we craft a SYN from a raw socket, the target's SYN-ACK reaches a kernel that knows no such
connection and answers with an RST, which kills the half-open state that the timing and stack
tests need to observe. The guard drops TCP packets from the guarded targets to our reserved
source-port range at the interfaces' netdev ingress hook (and, for routes it was not told about,
in the inet input hook), IPv4 and IPv6 alike (one address set per family in the same tables): the IP and TCP stacks never see them, so nothing is sent back, while our
AF_PACKET receiver, which taps before ingress, still captures them. Dropping before IP input is the
cheapest of the measured options (../shared/reference/packet-io.md §6) and, in a 4.2 M-probe scan,
saved our own kernel ~10–15 % of the time it spent on replies.

One table per run, named hostprint_<pid>_<start>; removed on normal exit, exceptions, Ctrl-C and
SIGTERM (the CLI turns SIGTERM into SystemExit), and at every start any hostprint_* table whose
process is gone is removed as stale.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import time

from hostprint.errors import UsageError

_PREFIX = "hostprint_"
_NAME_RE = re.compile(r"table (inet|netdev) (hostprint_(\d+)_\d+)")


def _nft(script: str, check: bool = True) -> subprocess.CompletedProcess:
    if not shutil.which("nft"):
        raise UsageError("the RST guard needs nftables (Debian package nftables): nft not found")
    return subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True, check=False)


def list_tables() -> list[tuple[str, str, int]]:
    """(family, name, owner pid) of every guard table."""
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [(m.group(1), m.group(2), int(m.group(3))) for m in _NAME_RE.finditer(out)]


def remove_stale() -> list[str]:
    """Delete guard tables whose owning process no longer runs; returns their names."""
    removed: list[str] = []
    if not shutil.which("nft"):
        return removed
    for family, name, pid in list_tables():
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _nft(f"delete table {family} {name}\n", check=False)
            removed.append(name)
    return removed


class RstGuard:
    """Context manager. `guard(addr)` adds a target; replies from guarded targets to our source
    port range never reach the local TCP stack."""

    def __init__(self, sport_lo: int, sport_hi: int, ifaces: list[str] | tuple[str, ...] = ()):
        self.name = f"{_PREFIX}{os.getpid()}_{int(time.time() * 1000) % 10**9}"
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
        r = _nft(script)
        if r.returncode != 0:
            raise UsageError(f"cannot install the RST guard table {self.name}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'nft failed'}")
        self.active = True
        atexit.register(self.remove)

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
        if self.active:
            self.active = False
            _nft(f"delete table inet {self.name}\n" + (f"delete table netdev {self.name}\n" if self.ifaces else ""), check=False)
