"""What a person watching the terminal sees: live progress on stderr while scanning, and each host's
report on stdout as soon as the host is done.

The report is nmap's normal text (report/normal.py) in both cases: on a terminal with colours, and
when stdout is a pipe or a file exactly the -oN text, never wrapped or padded to a width (rich is
not involved there at all). Progress goes to stderr so stdout stays clean for `-oJ -` / `-oX -`
pipelines, and is off unless stderr is a terminal (CI logs and pipes get no escape codes). The
engine calls it per batch, so every method is a few attribute updates; rich redraws on its own
timer, not per call.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hostprint.model import HostResult, ScanRun
from hostprint.report import nmapstyle as ns
from hostprint.report import normal
from hostprint.report.diff import RunDiff, diff_summary

_STATE_STYLE = {"open": "bold green", "closed": "red", "filtered": "yellow", "unfiltered": "green",
                "open|filtered": "yellow", "closed|filtered": "yellow"}
_PORT_ROW = re.compile(r"^(\d+/(?:tcp|udp|sctp))( +)(\S+)")
_HEADINGS = ("OS details:", "Aggressive OS guesses:", "OS: unknown", "Device type:", "Running:", "Service Info:")


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def plain_console(stream: IO[str] | None = None) -> Console:
    """A rich Console for output that is not a terminal: no wrapping, no padding, no colour."""
    return Console(file=stream or sys.stdout, soft_wrap=True, no_color=True, highlight=False, emoji=False,
                   width=100_000, color_system=None)


def _styled(line: str) -> Text:
    """One line of the normal report with colours for a terminal."""
    if line.startswith(normal.REPORT_FOR):
        t = Text(line, style="bold")
        if line.endswith("host down]"):
            t.stylize("red", line.index("["))
        return t
    m = _PORT_ROW.match(line)
    if m:
        t = Text(line)
        start = m.start(3)
        t.stylize(_STATE_STYLE.get(m[3], ""), start, start + len(m[3]))
        return t
    if line.startswith(("PORT ", "HOP ", "TRACEROUTE")):
        return Text(line, style="bold")
    if line.startswith("Warning:"):
        return Text(line, style="bold yellow")
    if line.startswith("Architecture:"):
        return Text(line, style="bold yellow")
    if line.startswith(_HEADINGS):
        head, _, rest = line.partition(":")
        t = Text(head + ":", style="bold")
        t.append(rest)
        return t
    if line.startswith(("Not shown:", "OS evidence:", "OS DB ", "OS detection conditions")):
        return Text(line, style="dim")
    return Text(line)


class Reporter:
    """Writes a run's hosts as they finish, then the closing line. On a terminal the lines are
    coloured; anywhere else they are the plain -oN text."""

    def __init__(self, run: ScanRun, stream: IO[str] | None = None, console: Console | None = None,
                 verbose: int = 0, reason: bool = False):
        self.run = run
        self.stream = stream or sys.stdout
        self.console = console
        self.tty = console.is_terminal if console is not None else is_terminal(self.stream)
        if self.tty and self.console is None:
            # no file: rich writes to whatever sys.stdout is at print time, i.e. through the live
            # progress display's redirection while the bars are drawn (lines appear above them)
            self.console = Console(file=None if stream is None else self.stream, soft_wrap=True, highlight=False)
        self.verbose = verbose
        self.reason = reason
        self.printed: set[str] = set()

    def _write(self, lines: list[str]) -> None:
        if self.tty and self.console is not None:
            for ln in lines:
                self.console.print(_styled(ln), soft_wrap=True)
        elif self.console is not None:
            self.console.file.write("\n".join(lines) + "\n")
            self.console.file.flush()
        else:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def host(self, h: HostResult) -> None:
        """One host's block, once; down hosts only with -v (nmap's rule)."""
        if h.address in self.printed or (h.status == "down" and not self.verbose):
            return
        self.printed.add(h.address)
        with_version = ns.has_version_info(self.run) or any(p.service and (p.service.product or p.service.version)
                                                            for p in h.ports)
        self._write(normal.host_block(self.run, h, with_version=with_version, verbose=self.verbose,
                                      reason=self.reason) + [""])

    def done(self) -> None:
        for h in self.run.hosts:
            self.host(h)
        self._write([f"hostprint done: {ns.done_summary(self.run)}"])


def print_run(run: ScanRun, console: Console | None = None, *, verbose: int | None = None,
              reason: bool | None = None) -> None:
    """The whole report at once (`history RUN`, and scans whose hosts were not streamed)."""
    rep = Reporter(run, console=console,
                   verbose=ns.run_verbose(run) if verbose is None else verbose,
                   reason=ns.run_reason(run) if reason is None else reason)
    rep.done()


_CHANGE_STYLE = {"appeared": "bold green", "opened": "bold green", "went away": "bold red", "closed": "bold red",
                 "changed": "yellow"}


def print_diff(d: RunDiff, console: Console | None = None) -> None:
    """`hostprint diff` on a terminal: one table per kind of change, then a one-line summary.
    Not on a terminal: the same facts as tab-separated lines (no widths, no wrapping)."""
    console = console or Console()
    hosts = [("appeared", h) for h in d.appeared] + [("went away", h) for h in d.went_away]
    sections: list[tuple[str, list[str], list[list[str]]]] = [
        ("Hosts", ["ADDRESS", "CHANGE", "STATUS IN OTHER RUN", "OPEN PORTS", "OS"],
         [[h.address, k, h.status_other, ", ".join(h.open_ports) or "-", h.os or "-"] for k, h in hosts]),
        ("Ports", ["ADDRESS", "PORT", "CHANGE", "BEFORE", "AFTER"],
         [[p.address, f"{p.port}/{p.protocol}", p.kind, p.before, p.after] for p in d.ports]),
        ("Services", ["ADDRESS", "PORT", "BEFORE", "AFTER"],
         [[s.address, f"{s.port}/{s.protocol}", s.before or "-", s.after or "-"] for s in d.services]),
        ("Fingerprints", ["ADDRESS", "PORT", "WHAT", "BEFORE", "AFTER"],
         [[f.address, f"{f.port}/{f.protocol}", f.what, f.before, f.after] for f in d.fingerprints]),
        ("OS verdicts", ["ADDRESS", "BEFORE", "AFTER"],
         [[o.address, o.before or "no verdict", o.after or "no verdict"] for o in d.os]),
    ]
    head = f"Changes from run {d.a['id']} to run {d.b['id']}"
    if not console.is_terminal:
        out = [head]
        if d.empty:
            out.append("No changes: same hosts, port states, services, fingerprints and OS verdicts.")
        for title, cols, rows in sections:
            if rows:
                out += ["", title, "\t".join(cols)] + ["\t".join(r) for r in rows]
        if not d.empty:
            out += ["", str(diff_summary(d))]
        console.file.write("\n".join(out) + "\n")
        return
    console.print(Text(head, style="bold"))
    if d.empty:
        console.print("No changes: same hosts, port states, services, fingerprints and OS verdicts.")
        return
    for title, cols, rows in sections:
        if not rows:
            continue
        t = Table(title=Text(title, style="bold"), title_justify="left", header_style="bold", show_edge=False)
        for c in cols:
            t.add_column(c, overflow="fold")
        kind_col = {"Hosts": 1, "Ports": 2}.get(title)
        for r in rows:
            t.add_row(*[Text(v, style=_CHANGE_STYLE.get(v, "") if i == kind_col else "") for i, v in enumerate(r)])
        console.print(t)
    console.print(diff_summary(d))


class ScanProgress:
    """Live progress bars on stderr. `enabled=None` means: only when stderr is a terminal.

    Disabled, it creates no rich objects at all and every call returns at once (except the lines
    the user asked for: -v's "Discovered open port" and --stats-every, which go to `say`).
    Phases of the same name (one per host group) share one bar. `windows` gives phases whose
    length is a listen window in seconds (--cron-os): their bar ticks with the clock.
    """

    def __init__(self, enabled: bool | None = None, console: Console | None = None, *, verbose: int = 0,
                 say: Callable[[str], None] | None = None, stats_every: float | None = None,
                 windows: dict[str, float] | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled)
        self.verbose = verbose
        self.say = say or (lambda text: print(text, flush=True))
        self.stats_every = stats_every
        self.windows = dict(windows or {})
        self.hosts_up = 0
        self.ports_open = 0
        self.fingerprints = 0
        self._next_id = 0
        self._progress: Any = None
        self._by_name: dict[str, int] = {}
        self._totals: dict[int, tuple[str, float | None, float]] = {}  # id -> (name, total, done)
        self._started = time.monotonic()
        self._current: int | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[counts]}"),
                console=console or Console(stderr=True),
                transient=False,
                refresh_per_second=8,
                # `-oJ -` streams results to stdout during the scan: a piped stdout must never be
                # captured into the (stderr) display. On a terminal both reach the same screen.
                redirect_stdout=sys.stdout.isatty(),
                redirect_stderr=sys.stderr.isatty(),
            )

    def __enter__(self) -> ScanProgress:
        if self._progress is not None:
            self._progress.start()
        if self.stats_every:
            self._spawn(self._stats_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1)
        if self._progress is not None:
            self._progress.stop()

    def _spawn(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)

    def _counts(self) -> str:
        return f"{self.hosts_up} up, {self.ports_open} open, {self.fingerprints} fingerprinted"

    def phase(self, name: str, total: int | None) -> int:
        """Start (or, for the next host group, extend) the progress bar of one phase."""
        window = next((w for k, w in self.windows.items() if name.startswith(k)), None)
        with self._lock:
            if name in self._by_name:
                task = self._by_name[name]
                _n, old, done = self._totals[task]
                new_total = None if total is None or window else (old or 0) + total
                self._totals[task] = (name, window or new_total, done)
                if self._progress is not None and not window:
                    self._progress.update(task, total=new_total)
                self._current = task
                return task
            if self._progress is None:
                self._next_id += 1
                task = self._next_id
            else:
                task = self._progress.add_task(name, total=window or total, counts=self._counts())
            self._by_name[name] = task
            self._totals[task] = (name, window or total, 0.0)
            self._current = task
        if window:
            self._spawn(lambda: self._tick(task, window))
        return task

    def _tick(self, task: int, window: float) -> None:
        """A listen window's bar: the seconds that have passed, until the phase finishes."""
        t0 = time.monotonic()
        while not self._stop.wait(0.25):
            name, total, done = self._totals[task]
            if total is not None and done >= total:
                return
            el = min(time.monotonic() - t0, window)
            self._totals[task] = (name, total, el)
            if self._progress is not None:
                self._progress.update(task, completed=el)

    def advance(self, task: int, n: int = 1) -> None:
        name, total, done = self._totals.get(task, ("", None, 0.0))
        if name and name in self._windows_names():
            return  # the clock moves this bar
        self._totals[task] = (name, total, done + n)
        if self._progress is not None:
            self._progress.advance(task, n)

    def _windows_names(self) -> set[str]:
        return {n for n in self._by_name if any(n.startswith(k) for k in self.windows)}

    def finish(self, task: int) -> None:
        """Mark a phase complete (a phase may end early, e.g. every host already answered)."""
        name, total, _done = self._totals.get(task, ("", None, 0.0))
        self._totals[task] = (name, total, total if total is not None else 0.0)
        if self._progress is not None:
            for t in self._progress.tasks:
                if t.id == task and t.total is not None:
                    self._progress.update(task, completed=t.total)

    def update_counts(self, hosts_up: int | None = None, ports_open: int | None = None,
                      fingerprints: int | None = None) -> None:
        """Set totals so far (whole run, not per host); fingerprints = hosts with an OS verdict."""
        if hosts_up is not None:
            self.hosts_up = hosts_up
        if ports_open is not None:
            self.ports_open = ports_open
        if fingerprints is not None:
            self.fingerprints = fingerprints
        if self._progress is not None:
            counts = self._counts()  # run totals: every bar shows them, finished or not
            for t in self._progress.tasks:
                self._progress.update(t.id, counts=counts)

    def open_port(self, address: str, port: int, protocol: str) -> None:
        """A port was found open: counted at once; -v prints nmap's line."""
        self.ports_open += 1
        self.update_counts()
        if self.verbose:
            self.say(f"Discovered open port {port}/{protocol} on {address}")

    def note(self, text: str) -> None:
        """A line for the person watching, above the bars (stderr)."""
        if self._progress is not None:
            self._progress.console.print(Text(text), soft_wrap=True)
        else:
            print(f"hostprint: {text}", file=sys.stderr, flush=True)

    def status_line(self) -> str:
        """nmap's --stats-every line: elapsed, hosts, the current phase and how far it is."""
        el = time.monotonic() - self._started
        line = f"Stats: {_hms(el)} elapsed; {self.hosts_up} hosts up, {self.ports_open} open ports"
        task = self._current
        if task is not None and task in self._totals:
            name, total, done = self._totals[task]
            if total:
                line += f"; {name}: about {min(done / total, 1.0) * 100:.2f}% done"
            else:
                line += f"; {name}"
        return line

    def _stats_loop(self) -> None:
        assert self.stats_every
        while not self._stop.wait(self.stats_every):
            text = self.status_line()
            if self._progress is not None:
                self._progress.console.print(Text(text), soft_wrap=True)
            else:
                print(text, file=sys.stderr, flush=True)


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
