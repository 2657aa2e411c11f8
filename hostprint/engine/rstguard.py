"""The RST guard: an nftables table of our own that keeps the local kernel quiet.

When we craft a SYN from a raw socket, the target's SYN-ACK reaches a kernel that knows no such
connection and answers with an RST, which kills the half-open state that the timing and stack
tests need to observe. The guard drops, in the input hook, TCP packets from the guarded targets to
our reserved source-port range: the TCP stack never sees them, so it sends nothing, while our
AF_PACKET receiver (which taps before netfilter) still captures them
(../shared/reference/packet-io.md §6: cheapest of the measured options).

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
_NAME_RE = re.compile(r"table inet (hostprint_(\d+)_\d+)")


def _nft(script: str, check: bool = True) -> subprocess.CompletedProcess:
    if not shutil.which("nft"):
        raise UsageError("the RST guard needs nftables (Debian package nftables): nft not found")
    return subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True, check=False)


def list_tables() -> list[tuple[str, int]]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [(m.group(1), int(m.group(2))) for m in _NAME_RE.finditer(out)]


def remove_stale() -> list[str]:
    """Delete guard tables whose owning process no longer runs; returns their names."""
    removed = []
    if not shutil.which("nft"):
        return removed
    for name, pid in list_tables():
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _nft(f"delete table inet {name}\n", check=False)
            removed.append(name)
    return removed


class RstGuard:
    """Context manager. `guard(addr)` adds a target; replies from guarded targets to our source
    port range never reach the local TCP stack."""

    def __init__(self, sport_lo: int, sport_hi: int):
        self.name = f"{_PREFIX}{os.getpid()}_{int(time.time() * 1000) % 10**9}"
        self.sport_lo, self.sport_hi = sport_lo, sport_hi
        self.active = False
        self.guarded: set[str] = set()

    def __enter__(self) -> "RstGuard":
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> None:
        remove_stale()
        script = (
            f"table inet {self.name} {{\n"
            f"  set targets {{ type ipv4_addr; flags interval; }}\n"
            f"  chain input {{ type filter hook input priority -300; policy accept;\n"
            f"    ip saddr @targets tcp dport {self.sport_lo}-{self.sport_hi} drop\n"
            f"  }}\n"
            f"}}\n"
        )
        r = _nft(script)
        if r.returncode != 0:
            raise UsageError(f"cannot install the RST guard table {self.name}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'nft failed'}")
        self.active = True
        atexit.register(self.remove)

    def guard(self, *addrs: str) -> None:
        new = [a for a in addrs if a not in self.guarded]
        if not new or not self.active:
            return
        for i in range(0, len(new), 4096):
            chunk = new[i:i + 4096]
            _nft(f"add element inet {self.name} targets {{ {', '.join(chunk)} }}\n")
        self.guarded.update(new)

    def remove(self) -> None:
        if self.active:
            self.active = False
            _nft(f"delete table inet {self.name}\n", check=False)
