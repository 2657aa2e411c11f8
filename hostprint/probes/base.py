"""The technique contract. Every way hostprint learns about hosts — discovery, each port scan,
-sV, --sequence, --cron-os timing, -O, passive observation — is one `Technique` subclass in its
own module under probes/, named by one line in probes/registry.py. This docstring is the whole
contract (zmap's probe_modules.h and httpx's transport base were the models):

1. **Set-up before any packet.** `Technique.create(options)` returns the configured instances the
   options ask for (none when not asked; several when one module serves several scan kinds). It
   loads every DB, payload and option the technique needs: a bad DB or option raises UsageError
   here, while the command still has sent nothing.
2. **Probe.** `await technique.probe(hosts, session)` measures the given hosts (HostResults that
   earlier phases filled: status, ports) over the session's shared links and returns one typed
   result per address it measured. It does not write into the hosts; facts later techniques
   need (a closed port seen by the SYN scan) go to the session.
3. **Record.** `technique.record(host, result)` turns one result into what the host carries:
   ports and services (port scans, -sV), or an evidence block for `host.os` plus architecture
   findings, built by the technique's matcher in match/. The combined verdict reads every block
   generically (match/verdict.py), so a technique never touches another's evidence.
4. **Partial results.** When the run stops inside `probe` (Ctrl-C, SIGTERM: the probe coroutine is
   cancelled), `technique.partial()` returns what that probe had decided so far, per address, as
   results `record` takes: the ports whose state an answer settled (never a port still waiting for
   one), -sV's ports that finished or were already identified, the timing tests up to the moment
   of the stop. It reads state the probe keeps on the instance (a probe that kept nothing has
   nothing: the default is `{}`), is called once, after the cancellation, and must not raise. The
   runner records it into the hosts the probe was measuring, which the outputs then mark
   incomplete (probes/runner.partial_hosts, report.RunOutputs.abort).

`phase` orders techniques in a run (discovery, port scans, services, sequence, timing, stack);
`needs_raw` says whether it sends crafted packets (CAP_NET_RAW); `label` names its progress bar.
Adding a technique = this subclass in one probe module + one matcher + one registry line.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from hostprint.model import OPEN, HostResult, Json, PortResult

if TYPE_CHECKING:
    from hostprint.engine.link import Links
    from hostprint.engine.rate import Timing
    from hostprint.engine.trace import PacketTracer
    from hostprint.probes.options import ScanOptions

R = TypeVar("R")


class Progress(Protocol):
    """What techniques report to the terminal (report.terminal.ScanProgress implements it)."""

    def phase(self, name: str, total: int | None) -> int: ...

    def advance(self, task: int, n: int = 1) -> None: ...

    def update_counts(self, hosts_up: int | None = None, ports_open: int | None = None,
                      fingerprints: int | None = None) -> None: ...

    def finish(self, task: int) -> None: ...

    def open_port(self, address: str, port: int, protocol: str) -> None:
        """A port was found open (nmap -v prints "Discovered open port" at once)."""

    def note(self, text: str) -> None:
        """A line for the person watching (a phase's news, a slow target), printed above the bars."""


class NoProgress:
    def phase(self, name: str, total: int | None) -> int:
        return 0

    def advance(self, task: int, n: int = 1) -> None:
        pass

    def update_counts(self, hosts_up: int | None = None, ports_open: int | None = None,
                      fingerprints: int | None = None) -> None:
        pass

    def finish(self, task: int) -> None:
        pass

    def open_port(self, address: str, port: int, protocol: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class Session:
    """What the techniques of one run share: the timing template, the raw links (opened on
    first use, closed by whoever made the session), progress, per-technique statistics and facts
    one technique leaves for another."""

    timing: Timing
    progress: Progress = field(default_factory=NoProgress)
    stats: dict[str, dict[str, Json]] = field(default_factory=dict)
    #: one closed TCP port per address, seen by the SYN scan (-O needs a closed port)
    closed_tcp: dict[str, int] = field(default_factory=dict)
    #: --packet-trace: the links' tracer, a line per frame sent and received (None: off)
    tracer: PacketTracer | None = None
    #: --host-timeout: seconds from `started` after which no technique keeps probing a host
    host_timeout: float | None = None
    started: float = field(default_factory=time.monotonic)
    _links: Links | None = None

    @property
    def links(self) -> Links:
        if self._links is None:
            from hostprint.engine.link import Links

            self._links = Links(tracer=self.tracer)
        return self._links

    @property
    def deadline(self) -> float | None:
        """The monotonic time --host-timeout ends probing (None: no limit)."""
        return None if self.host_timeout is None else self.started + self.host_timeout

    def close(self) -> None:
        if self._links is not None:
            self._links.close()
            self._links = None


def port_progress(session: Session, task: int, protocol: str) -> Callable[[str, int, str], None]:
    """A scan's per-port callback (address, port, state): one step of the progress `task` per
    port decided, and an open port shown at once (nmap -v's "Discovered open port")."""
    def on_port(addr: str, port: int, state: str) -> None:
        session.progress.advance(task, 1)
        if state == OPEN:
            session.progress.open_port(addr, port, protocol)
    return on_port


class Technique(ABC, Generic[R]):
    name: ClassVar[str]
    phase: ClassVar[int]
    needs_raw: ClassVar[bool] = True
    label: str = ""  # progress bar name (default: the technique's name)

    @classmethod
    @abstractmethod
    def create(cls, options: ScanOptions) -> Sequence[Technique[Any]]:
        """The instances `options` ask for, with DBs loaded (UsageError before any packet)."""

    @abstractmethod
    async def probe(self, hosts: Sequence[HostResult], session: Session) -> Mapping[str, R]:
        """Measure `hosts`; one result per address measured."""

    @abstractmethod
    def record(self, host: HostResult, result: R) -> None:
        """Put one result into the host (ports, services, or an evidence block in host.os)."""

    _settled: dict[str, R] | None = None  # a probe that fills its result per host as each finishes

    def partial(self) -> Mapping[str, R]:
        """What the `probe` that a stop cancelled had decided so far, per address (rule 4 above):
        the hosts a probe had finished in `self._settled` (techniques that work host by host set it
        to their result dict), or what an override keeps on the instance; else nothing."""
        return dict(self._settled) if self._settled else {}


class PortListScan(Technique[list[PortResult]]):
    """A port scan whose result for a host is its list of PortResults (connect(), UDP): the
    subclass names its protocol and scan kind and implements `scan`."""

    phase = 10
    protocol: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self, options: ScanOptions):
        self.options = options
        self.ports = options.ports.get(self.protocol, [])

    @classmethod
    def create(cls, options: ScanOptions) -> Sequence[Technique[Any]]:
        return [cls(options)] if cls.kind in options.scan_kinds and options.ports.get(cls.protocol) else []

    async def probe(self, hosts: Sequence[HostResult], session: Session) -> Mapping[str, list[PortResult]]:
        addrs = [h.address for h in hosts]
        task = session.progress.phase(self.label or self.name, len(addrs) * len(self.ports))
        out, stats = await self.scan(addrs, session)
        session.progress.advance(task, len(addrs) * len(self.ports))
        for addr, results in out.items():
            for r in results:
                if r.state == "open":
                    session.progress.open_port(addr, r.port, r.protocol)
        session.stats[self.name] = stats
        return out

    @abstractmethod
    async def scan(self, addrs: list[str], session: Session) -> tuple[dict[str, list[PortResult]], dict[str, Json]]:
        """Results per address and this scan's statistics."""

    def record(self, host: HostResult, result: list[PortResult]) -> None:
        host.ports.extend(result)
