"""The scrubber's lifecycle in one network namespace: up (install, serve the queue, remove on every
exit path), down (stop the owner by PID after checking its start time, remove what is left), and
the list of what is installed.

Crash safety as for the RST guard (engine/rstguard.py): everything is named after the owner's PID
and kernel start time; removal holds SIGINT/SIGTERM/SIGHUP until nft and iptables have answered;
an atexit hook retries a removal an exception skipped; after a SIGKILL, `scrub down` (or the next
`scrub up`) finds the tables and chains whose owner is gone (PID gone, or reused by a process that
started at another time) and removes them, and puts back the conntrack sysctl the owner changed
(the old value is kept in the nft table's comment).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from hostprint.engine.rstguard import proc_start_time
from hostprint.engine.signals import deferred, subprocess_kwargs
from hostprint.errors import UsageError
from hostprint.scrub import rules
from hostprint.scrub.rules import ScrubConfig

LOOSE = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose"
#: With SYNPROXY, a client that reuses a source port while conntrack still holds the old
#: connection in TIME_WAIT (120 s) fails: its ACK matches the old entry instead of reaching SYNPROXY
#: (measured: 3,000 connections at ~3,500/s through the scrub lab all work; the next 3,000 from the
#: same client lost 25-34 %; with this timeout at 1 s, bursts back to back still lost one parallel
#: wave (64) in 1 of 4; at 0, 2 x 8 bursts of 3,000 all worked). The scrubber sets it to 0 while it
#: runs and puts it back, like tcp_loose. Cost: a late segment of a closed connection is then "new"
#: without SYN and dropped by the filter, as it would be after 120 s anyway.
TIME_WAIT = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait"
TIME_WAIT_SCRUBBED = "0"


def _run(argv: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=script, text=True, capture_output=True, check=False,
                          **subprocess_kwargs())  # type: ignore[call-overload,no-any-return]


def _need_tools() -> None:
    for tool, pkg in (("nft", "nftables"), ("iptables", "iptables"), ("ip6tables", "iptables")):
        if not shutil.which(tool):
            raise UsageError(f"the scrubber needs {tool} (Debian package {pkg})")


@dataclass
class Installed:
    """A scrubber found in this namespace: its owner, and which parts exist."""

    pid: int
    start: int
    table: str | None = None
    chains: list[str] = field(default_factory=list)  # "raw" / "mangle" (iptables), "raw6" / "mangle6" (ip6tables)
    loose: str | None = None  # the conntrack sysctl value to put back
    created: list[str] = field(default_factory=list)  # iptables tables (ip raw, ip mangle) it created
    time_wait: str | None = None  # likewise, conntrack's TIME_WAIT timeout

    @property
    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start


def installed() -> list[Installed]:
    """Every scrubber table and chain in this network namespace, grouped by owner."""
    out: dict[tuple[int, int], Installed] = {}
    r = _run(["nft", "list", "tables"])
    for m in rules.TABLE_RE.finditer(r.stdout):
        key = (int(m.group(2)), int(m.group(3)))
        inst = out.setdefault(key, Installed(*key))
        inst.table = m.group(1)
        t = _run(["nft", "list", "table", "inet", m.group(1)])
        lm = re.search(r"loose=(\d)", t.stdout)
        inst.loose = lm.group(1) if lm else None
        tm = re.search(r"tw=(\d+)", t.stdout)
        inst.time_wait = tm.group(1) if tm else None
        cm = re.search(r"created=([a-z0-9+]+)", t.stdout)
        inst.created = cm.group(1).split("+") if cm else []
    for tool, suffix in (("iptables", ""), ("ip6tables", "6")):
        if not shutil.which(tool):
            continue
        for tab in ("raw", "mangle"):
            s = _run([tool, "-t", tab, "-S"]).stdout
            for m in re.finditer(r"^-N (HPSC_(\d+)_(\d+))$", s, re.M):
                key = (int(m.group(2)), int(m.group(3)))
                out.setdefault(key, Installed(*key)).chains.append(tab + suffix)
    return list(out.values())


def _remove(inst: Installed) -> list[str]:
    """Remove one owner's table and chains and restore the sysctl; returns problems in words."""
    problems = []
    table, chain = rules.names(inst.pid, inst.start)
    with deferred():
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool):
                for argv in rules.iptables_removal(chain):
                    _run([tool, *argv])
        if inst.table:
            r = _run(["nft", "-f", "-"], f"delete table inet {table}\n")
            if r.returncode != 0 and "No such file" not in r.stderr:
                problems.append(f"table {table}: {(r.stderr.strip().splitlines() or ['nft failed'])[-1]}")
        for tab in inst.created:  # iptables made these tables for us: gone again when nobody else uses them
            tool, family, name = ("ip6tables", "ip6", tab[:-1]) if tab.endswith("6") else ("iptables", "ip", tab)
            rest = _run([tool, "-t", name, "-S"]).stdout.splitlines()
            if rest and all(ln.startswith("-P ") for ln in rest):
                _run(["nft", "-f", "-"], f"delete table {family} {name}\n")
        if inst.loose is not None and os.path.exists(LOOSE):
            try:
                with open(LOOSE, "w") as f:
                    f.write(inst.loose)
            except OSError as e:
                problems.append(f"cannot restore {LOOSE}: {e}")
        if inst.time_wait is not None and os.path.exists(TIME_WAIT):
            try:
                with open(TIME_WAIT, "w") as f:
                    f.write(inst.time_wait)
            except OSError as e:
                problems.append(f"cannot restore {TIME_WAIT}: {e}")
    return problems


def remove_stale() -> list[str]:
    """Remove scrubbers whose owner is gone; their table names."""
    if not shutil.which("nft"):
        return []
    gone = []
    for inst in installed():
        if inst.pid != os.getpid() and not inst.alive:
            _remove(inst)
            gone.append(rules.names(inst.pid, inst.start)[0])
    return gone


def down(wait: float = 10.0) -> list[str]:
    """Stop every scrubber of this namespace: a live owner gets SIGTERM (its PID checked against
    its start time first: a reused PID is never signalled) and removes its own rules; whatever is
    left after `wait` seconds (or of a dead owner) is removed here. Returns what was done, in words."""
    _need_tools()
    done = []
    for inst in installed():
        name = rules.names(inst.pid, inst.start)[0]
        if inst.alive and inst.pid != os.getpid():
            os.kill(inst.pid, signal.SIGTERM)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and proc_start_time(inst.pid) == inst.start:
                time.sleep(0.05)
            done.append(f"stopped scrubber process {inst.pid}")
        left = [i for i in installed() if (i.pid, i.start) == (inst.pid, inst.start)]
        for i in left:
            problems = _remove(i)
            if problems:
                raise UsageError(f"cannot remove scrubber {name}: {'; '.join(problems)}")
            done.append(f"removed {name}" + (f" (conntrack tcp_loose back to {i.loose})" if i.loose else ""))
    return done


class Scrubber:
    """Install on enter, remove on exit (and at exit, and after a crash by the next up/down)."""

    def __init__(self, cfg: ScrubConfig):
        bad = cfg.check()
        if bad:
            raise UsageError("; ".join(bad))
        self.cfg = cfg
        self.pid = os.getpid()
        self.start = proc_start_time(self.pid) or 0
        self.table, self.chain = rules.names(self.pid, self.start)
        self.active = False
        self.loose: str | None = None
        self.time_wait: str | None = None
        self.created: list[str] = []

    def __enter__(self) -> Scrubber:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> None:
        _need_tools()
        if self.cfg.mode == "router" and not os.path.exists(f"/sys/class/net/{self.cfg.outside}"):
            raise UsageError(f"--outside {self.cfg.outside}: no such interface in this network namespace")
        remove_stale()
        live = [i for i in installed() if i.alive and i.pid != self.pid]
        if live:
            raise UsageError(f"a scrubber already runs here (process {live[0].pid}); `hostprint scrub down` stops it")
        if self.cfg.synproxy and os.path.exists(LOOSE):
            with open(LOOSE) as f:
                self.loose = f.read().strip()
        if self.cfg.synproxy and os.path.exists(TIME_WAIT):
            with open(TIME_WAIT) as f:
                self.time_wait = f.read().strip()
        have = _run(["nft", "list", "tables"]).stdout
        self.created = [t for t in ("raw", "mangle") if self.cfg.queue and f"table ip {t}\n" not in have + "\n"]
        self.created += [t + "6" for t in ("raw", "mangle") if self.cfg.queue and rules.iptables_rules(self.cfg, self.chain, 6)
                         and f"table ip6 {t}\n" not in have + "\n"]
        comment = (f"hostprint scrub pid={self.pid}" + (f" loose={self.loose}" if self.loose is not None else "")
                   + (f" tw={self.time_wait}" if self.time_wait is not None else "")
                   + (f" created={'+'.join(self.created)}" if self.created else ""))
        with deferred():  # installed and known to be installed, or neither
            r = _run(["nft", "-f", "-"], rules.nft_ruleset(self.cfg, self.table, comment))
            if r.returncode == 0:
                self.active = True
                atexit.register(self.remove)
        if r.returncode != 0:
            raise UsageError(f"cannot install the scrubber table: {(r.stderr.strip().splitlines() or ['nft failed'])[-1]}")
        try:
            for tool, version in (("iptables", 4), ("ip6tables", 6)):
                for argv in rules.iptables_rules(self.cfg, self.chain, version):
                    q = _run([tool, *argv])
                    if q.returncode != 0:
                        raise UsageError(f"{tool} {' '.join(argv)}: {q.stderr.strip()}")
            if self.cfg.synproxy and self.loose is not None:
                with open(LOOSE, "w") as f:
                    f.write("0")
            if self.cfg.synproxy and self.time_wait is not None:
                with open(TIME_WAIT, "w") as f:
                    f.write(TIME_WAIT_SCRUBBED)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        if not self.active:
            return
        inst = Installed(self.pid, self.start, self.table, ["raw", "mangle", "raw6", "mangle6"], self.loose, self.created,
                         self.time_wait)
        problems = _remove(inst)
        if problems:
            print(f"hostprint: warning: scrubber removal: {'; '.join(problems)}; run `hostprint scrub down`",
                  file=sys.stderr)
        else:
            self.active = False

    def serve(self, stop: list[bool], ready: str | None = None) -> dict[str, int]:
        """Run the NFQUEUE stage until stop[0] is set (the command's signal handlers set it)."""
        from hostprint.scrub import nfqueue
        from hostprint.scrub.normalise import Norm, normalise

        n = Norm(ttl=self.cfg.ttl, mss=self.cfg.mss, window=self.cfg.window)
        if not self.cfg.queue:
            if ready:
                print(ready, flush=True)
            while not stop[0]:
                time.sleep(0.2)
            return {}
        q = nfqueue.Queue(self.cfg.queue_num, lambda p: normalise(p, n))
        try:
            if ready:
                print(ready, flush=True)
            q.serve(lambda: stop[0])
        finally:
            q.close()
        return q.stats
