"""What a person watching the terminal sees: live progress on stderr while scanning, and one table
per host when done.

Progress goes to stderr so stdout stays clean for `-oJ -` / `-oX -` pipelines, and is off unless
stderr is a terminal (CI logs and pipes get no escape codes). The engine calls it per batch, so
every method is a few attribute updates; rich redraws on its own timer, not per call.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hostprint.model import CLOSED, FILTERED, OPEN, HostResult, ScanRun
from hostprint.report import nmapstyle as ns
from hostprint.report.diff import RunDiff, diff_summary

_STATE_STYLE = {OPEN: "bold green", CLOSED: "red", FILTERED: "yellow"}


def _host_line(run: ScanRun, h: HostResult) -> Text:
    t = Text()
    t.append(h.address, style="bold")
    if h.hostname:
        t.append(f" ({h.hostname})")
    t.append("  ")
    t.append(h.status, style="green" if h.status == "up" else "red")
    if h.reasons:
        t.append(f" ({', '.join(h.reasons)})")
    if h.mac:
        t.append(f"  mac {h.mac}")
    if h.distance is not None:
        t.append(f"  {ns.plural(h.distance, 'hop')}")
    if h.rtt_us is not None:
        t.append(f"  {ns.seconds_sig2(h.rtt_us / 1e6)}s latency")
    return t


def _host_table(run: ScanRun, h: HostResult) -> Table:
    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    for col in ("PORT", "STATE", "REASON", "SERVICE", "VERSION"):
        table.add_column(col, overflow="fold")
    for p in h.ports:
        reason = p.reason + (f" ttl {p.reason_ttl}" if p.reason_ttl is not None else "")
        # Text cells, not str: banners and versions may contain rich markup like "[b]".
        table.add_row(
            Text(f"{p.port}/{p.protocol}"),
            Text(p.state, style=_STATE_STYLE.get(p.state, "")),
            Text(reason),
            Text(ns.service_name(p.service) if p.service else ""),
            Text(ns.service_version(p.service)),
        )
    return table


def _os_line(h: HostResult) -> Text | None:
    """The verdict, then the strongest piece of evidence of each method that supports it, what
    sits in between (relay, forwarding), and why test conditions were not ideal."""
    matches = ns.os_matches(h)
    arch = h.os.architecture
    conditions = h.os.stack.conditions if h.os.stack else []
    unknown = ns.unknown_stack_line(h)
    if not matches and not arch and not conditions and not unknown:
        return None
    t = Text()
    if unknown:
        t.append(unknown, style="bold")
        if h.os.unknown is not None:
            for e in h.os.unknown.evidence:
                t.append(f"\n  {e.method}: {e.detail}", style="dim")
    if matches:
        best = matches[0]
        t.append(("\n" if len(t) else "") + "OS: ", style="bold")
        t.append(f"{best.name} ({ns.accuracy_percent(best)}%)")
        others = [m.name for m in matches[1:3]]
        if others:
            t.append(f"; next: {', '.join(others)}", style="dim")
        seen: set[str] = set()
        for e in best.evidence:
            if e.method not in seen:
                seen.add(e.method)
                t.append(f"\n  {e.method}: {e.detail}", style="dim")
    for a in arch:
        t.append(("\n" if len(t) else "") + f"Architecture: {a.kind}: {a.detail}", style="bold yellow")
    if conditions:
        t.append(("\n" if len(t) else "") + "OS detection conditions not ideal: " + "; ".join(conditions), style="dim")
    return t


def print_run(run: ScanRun, console: Console | None = None) -> None:
    console = console or Console()
    for h in run.hosts:
        console.print(_host_line(run, h))
        if h.status != "up":
            continue
        for e in h.extraports:
            console.print(Text("Not shown: " + ns.extraports_line(run, h, e), style="dim"))
        if h.ports:
            console.print(_host_table(run, h))
        os_line = _os_line(h)
        if os_line is not None:
            console.print(os_line)
        console.print()
    console.print(f"hostprint done: {ns.done_summary(run)}", style="bold")


_CHANGE_STYLE = {"appeared": "bold green", "opened": "bold green", "went away": "bold red", "closed": "bold red",
                 "changed": "yellow"}


def print_diff(d: RunDiff, console: Console | None = None) -> None:
    """`hostprint diff` on a terminal: one table per kind of change, then a one-line summary."""
    console = console or Console()
    console.print(Text(f"Changes from run {d.a['id']} to run {d.b['id']}", style="bold"))
    if d.empty:
        console.print("No changes: same hosts, port states, services and OS verdicts.")
        return

    def table(title: str, cols: list[str], rows: list[list[Text]]) -> None:
        if not rows:
            return
        t = Table(title=Text(title, style="bold"), title_justify="left", header_style="bold", show_edge=False)
        for c in cols:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)

    hosts = [("appeared", h) for h in d.appeared] + [("went away", h) for h in d.went_away]
    table("Hosts", ["ADDRESS", "CHANGE", "STATUS IN OTHER RUN", "OPEN PORTS", "OS"],
          [[Text(h.address), Text(k, style=_CHANGE_STYLE[k]), Text(h.status_other),
            Text(", ".join(h.open_ports) or "-"), Text(h.os or "-")] for k, h in hosts])
    table("Ports", ["ADDRESS", "PORT", "CHANGE", "BEFORE", "AFTER"],
          [[Text(p.address), Text(f"{p.port}/{p.protocol}"), Text(p.kind, style=_CHANGE_STYLE[p.kind]),
            Text(p.before), Text(p.after)] for p in d.ports])
    table("Services", ["ADDRESS", "PORT", "BEFORE", "AFTER"],
          [[Text(s.address), Text(f"{s.port}/{s.protocol}"), Text(s.before or "-"), Text(s.after or "-")]
           for s in d.services])
    table("OS verdicts", ["ADDRESS", "BEFORE", "AFTER"],
          [[Text(o.address), Text(o.before or "no verdict"), Text(o.after or "no verdict")] for o in d.os])
    console.print(diff_summary(d))


class ScanProgress:
    """Live progress bars on stderr. `enabled=None` means: only when stderr is a terminal.

    Disabled, it creates no rich objects at all and every call returns at once.
    """

    def __init__(self, enabled: bool | None = None, console: Console | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled)
        self.hosts_up = 0
        self.ports_open = 0
        self.fingerprints = 0
        self._next_id = 0
        self._progress: Any = None
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
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _counts(self) -> str:
        return f"{self.hosts_up} up, {self.ports_open} open, {self.fingerprints} fingerprinted"

    def phase(self, name: str, total: int | None) -> int:
        """Start a progress bar for one phase (discovery, syn scan, ...); returns its task id."""
        if self._progress is None:
            self._next_id += 1
            return self._next_id
        return self._progress.add_task(name, total=total, counts=self._counts())

    def advance(self, task: int, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(task, n)

    def finish(self, task: int) -> None:
        """Mark a phase complete (a phase may end early, e.g. every host already answered)."""
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
            counts = self._counts()
            for t in self._progress.tasks:
                if not t.finished:
                    self._progress.update(t.id, counts=counts)
