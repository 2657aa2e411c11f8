"""Every way hostprint hands results back: JSON lines, nmap XML / grepable / normal files, the
terminal, and the SQLite inventory.

Nothing measured is lost: `RunOutputs` checks every target (files and the inventory) before the
first packet, streams -oJ host by host as hosts finish, and at the end (or at an interruption, with
the hosts finished so far plus those in progress, marked incomplete) attempts every output even when
one fails. A run the inventory cannot take is saved to a recovery file (`hostprint history --import
FILE`). Failures are reported in one line naming each path, after everything else was written.
`emit_outputs` is the one-call form for commands without streaming.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hostprint.errors import UsageError
from hostprint.model import HostResult, ScanRun

#: paths that mean "our standard output": written to sys.stdout, never reopened (reopening a
#: redirected stdout would truncate what was written to it)
STDOUT_ALIASES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


class Interrupted(UsageError):
    """A run stopped by a signal after what it measured was saved; the message says where. Exit code
    128 + the signal's number, as a shell reports a process the signal ended."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def is_stdout(path: str | Path | None) -> bool:
    return path is not None and str(path) in STDOUT_ALIASES


def _write_text(path: str | Path, text: str, what: str) -> None:
    """Write a whole output file. A regular file is replaced atomically (a temporary file beside it,
    then rename), so a full disk leaves the previous file, not a truncated one; devices, FIFOs and
    symlinks are written in place; stdout aliases go to sys.stdout."""
    if is_stdout(path):
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as e:
            raise UsageError(f"cannot write {what} output to stdout: {e.strerror or e}") from None
        return
    p = Path(path)
    try:
        st = os.stat(p) if p.exists() else None
        in_place = p.is_symlink() or (st is not None and not _regular(st.st_mode))
    except OSError as e:
        raise UsageError(f"cannot write {what} output {path}: {e.strerror or e}") from None
    tmp: Path | None = None
    try:
        if in_place:
            with open(p, "w", encoding="utf-8") as fp:
                fp.write(text)
            return
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
            fp.flush()
            os.fsync(fp.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        raise UsageError(f"cannot write {what} output {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                tmp.unlink()
            except OSError:
                pass


def _regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def check_output_paths(**paths: str | Path | None) -> None:
    """Fail before a scan starts, not after it, when an output file cannot be written.

    Nothing is created or truncated: the path is opened for appending (created and removed again
    when new), which is the real test (/proc, read-only mounts, a FIFO nobody reads, root's
    permissions); a directory is refused; stdout takes one output at most. Keyword names are used in
    the message."""
    import errno

    to_stdout = [opt for opt, path in paths.items() if is_stdout(path)]
    if len(to_stdout) > 1:
        raise UsageError(f"only one output can go to stdout ({' and '.join(to_stdout)} both do)")
    for opt, path in paths.items():
        if path is None or is_stdout(path):
            continue
        p = Path(path)
        if str(path) == "":
            raise UsageError(f"cannot write {opt} output '': empty file name")
        parent = p.parent if str(p.parent) else Path(".")
        if p.is_dir():
            raise UsageError(f"cannot write {opt} output {path}: is a directory")
        if not p.exists() and not p.is_symlink() and not parent.is_dir():
            raise UsageError(f"cannot write {opt} output {path}: directory {parent} is missing")
        existed = p.exists() or p.is_symlink()
        try:
            fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        except OSError as e:
            why = "a FIFO nobody reads" if e.errno == errno.ENXIO else (e.strerror or str(e))
            raise UsageError(f"cannot write {opt} output {path}: {why}") from None
        os.close(fd)
        if not existed:
            try:
                os.unlink(p)
            except OSError:
                pass


class RunOutputs:
    """Every output of one run, from the check before the first packet to the last write.

    check() before any packet; host_done(host) as each host finishes (-oJ streams it); finish(run)
    at the end, or abort(run, hosts, phase, exc) when the run stops early."""

    def __init__(self, *, oJ: str | Path | None = None, oX: str | Path | None = None,
                 oG: str | Path | None = None, oN: str | Path | None = None, db: str | Path | None = None,
                 record: bool = True, json_extra: dict[str, Any] | None = None,
                 others: Mapping[str, tuple[str | Path, Callable[[ScanRun], None]]] | None = None):
        """`others`: a command's own formats (amap's -o log), option -> (path, writer of the run);
        checked, written and reported with the rest (a writer raises UsageError or OSError)."""
        self.files = {"oJ": oJ, "oX": oX, "oG": oG, "oN": oN}
        self.others = {opt: (path, write) for opt, (path, write) in (others or {}).items() if path is not None}
        self.db = db
        self.record = record
        self.json_extra = json_extra or {}
        self.run: ScanRun | None = None
        self._stream: Any = None  # JsonlWriter, opened at the first finished host
        self._streamed: set[int] = set()
        self._done: set[int] = set()  # hosts reported finished by host_done
        self._stream_failed = False

    def check(self) -> None:
        """Every output target, before the first packet (UsageError, one line)."""
        check_output_paths(**self.files, **{opt: path for opt, (path, _w) in self.others.items()})
        if self.record:
            from hostprint.report.store import check_inventory

            check_inventory(self.db)

    def start(self, run: ScanRun) -> None:
        self.run = run

    def host_done(self, host: HostResult) -> None:
        """Stream one finished host to -oJ. Never raises: a failing stream is rewritten whole at
        finish(), and its error reported there."""
        self._done.add(id(host))
        oJ = self.files["oJ"]
        if oJ is None or self.run is None or self._stream_failed:
            return
        from hostprint.report.jsonl import JsonlWriter

        try:
            if self._stream is None:
                self._stream = JsonlWriter("-" if is_stdout(oJ) else oJ)
            self._stream.write_host(self.run, host, **self.json_extra)
            self._streamed.add(id(host))
        except UsageError:
            self._stream_failed = True
            self._close_stream()
        except BrokenPipeError:
            self._stream_failed = True

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except (OSError, UsageError):
                pass
            self._stream = None

    def finish(self, run: ScanRun, *, observations: Iterable[tuple[str, str, Any]] = (),
               hosts: Any = None) -> list[str]:
        """Write every output; each is attempted even when another failed. Returns what was written;
        UsageError (one line, every failure and where the run was saved instead) when something failed.
        `hosts`: a factory giving a fresh pass over the hosts, for the inventory and the recovery
        file, when they are not in run.hosts (a passive run streams them from disk)."""
        def to_xml(r: ScanRun) -> str:  # imported when asked for: the XML writer pulls in the
            from hostprint.report.nmapxml import to_xml  # certificate parser (cryptography, ~0.03 s)

            return to_xml(r)

        def format_grepable(r: ScanRun) -> str:
            from hostprint.report.grepable import format_grepable

            return format_grepable(r)

        def format_normal(r: ScanRun) -> str:
            from hostprint.report.normal import format_normal

            return format_normal(r)

        self.run = run
        incomplete = set(_incomplete(run))
        written: list[str] = []
        errors: list[str] = []
        oJ = self.files["oJ"]
        if oJ is not None:
            try:
                self._finish_json(run, incomplete)
                written.append(str(oJ))
            except UsageError as e:
                errors.append(str(e))
        for opt, what, fmt in (("oX", "XML", to_xml), ("oG", "grepable", format_grepable),
                               ("oN", "normal", format_normal)):
            path = self.files[opt]
            if path is None:
                continue
            try:
                _write_text(path, fmt(run), what)
                written.append(str(path))
            except UsageError as e:
                errors.append(str(e))
        for opt, (path, write) in self.others.items():
            try:
                write(run)
                written.append(str(path))
            except UsageError as e:
                errors.append(str(e))
            except OSError as e:
                errors.append(f"cannot write {opt} output {path}: {e.strerror or e}")
        if self.record:
            where = self._record(run, list(observations), errors, hosts)
            if where:
                written.append(where)
        if errors:
            raise UsageError("; ".join(errors))
        return written

    def _finish_json(self, run: ScanRun, incomplete: set[str]) -> None:
        from hostprint.report.jsonl import JsonlWriter, dumps_record

        oJ = self.files["oJ"]
        assert oJ is not None

        def record(h: HostResult) -> dict[str, Any]:
            extra = dict(self.json_extra)
            if h.address in incomplete:
                extra["incomplete"] = True
            return {**extra, **run.host_record(h)}

        if not self._stream_failed:
            try:
                if self._stream is None:
                    self._stream = JsonlWriter("-" if is_stdout(oJ) else oJ)
                for h in run.hosts:
                    if id(h) not in self._streamed:
                        self._stream.write_record(record(h))
                        self._streamed.add(id(h))
                self._close_stream()
                return
            except UsageError:
                self._close_stream()
            except BrokenPipeError:
                self._stream = None
                raise UsageError("cannot write JSON lines output to stdout: broken pipe") from None
        # the stream failed on the way (disk full ...): one more try, the whole file at once
        _write_text(oJ, "".join(dumps_record(record(h)) + "\n" for h in run.hosts), "JSON lines")

    def _record(self, run: ScanRun, observations: list[tuple[str, str, Any]], errors: list[str],
                hosts: Any = None) -> str | None:
        """Record in the inventory; when that fails, save a recovery file and say where."""
        import sqlite3

        from hostprint.report.inventory import save_recovery
        from hostprint.report.store import open_inventory

        try:
            with open_inventory(self.db) as inv:
                inv.record_run(run, hosts() if hosts is not None else None)
                if observations:
                    inv.add_observations(run.id, observations)
                return str(inv.path)
        except (UsageError, OSError, sqlite3.Error) as e:
            why = str(e) if isinstance(e, UsageError) else f"inventory {self.db or 'default'}: {e}"
        try:
            path = save_recovery(run, observations, hosts)
            errors.append(f"{why}; the run was saved to {path} (hostprint history --import {path})")
            return str(path)
        except OSError as e2:
            errors.append(f"{why}; the run could not be saved elsewhere either ({e2.strerror or e2})")
            return None

    def abort(self, run: ScanRun, hosts: Sequence[HostResult], phase: str | None, exc: BaseException,
              *, measured: bool = True) -> BaseException:
        """The run stopped early (a signal, or an error): write what was measured to every output,
        then return the exception to raise: Interrupted (one line saying where the results went) for
        Ctrl-C / SIGTERM / SIGHUP, the original exception otherwise. `measured=False`: nothing was
        measured yet, nothing is written."""
        from hostprint.engine.signals import deferred

        signum = signal_of(exc)
        if not measured or not hosts:
            return Interrupted("interrupted before any host was measured; nothing was written",
                               signum) if signum else exc
        incomplete = [h.address for h in hosts if id(h) not in self._done]
        run.hosts = list(hosts)
        run.finished = time.time()
        what = signal_name(exc)
        run.stats["interrupted"] = {"by": what, "phase": phase, "incomplete": incomplete}
        written: list[str] = []
        problem: str | None = None
        try:
            with deferred():  # a second Ctrl-C waits until everything is saved
                try:
                    written = self.finish(run)
                except UsageError as e:
                    problem = str(e)
        except (KeyboardInterrupt, SystemExit):
            pass  # that second signal, delivered now: we are on the way out anyway
        if not signum:
            if problem:
                print(f"hostprint: {problem}", file=sys.stderr)
            return exc
        done = len(hosts) - len(incomplete)
        msg = f"interrupted ({what}{f' during {phase}' if phase else ''}): {done} host(s) finished"
        if incomplete:
            msg += f", {len(incomplete)} incomplete"
        if written:
            msg += "; saved to " + ", ".join(w for w in written if not is_stdout(w) or w == "-")
        if problem:
            msg += "; " + problem
        return Interrupted(msg, signum)


def signal_of(exc: BaseException) -> int:
    """The signal a stop came from: Ctrl-C's KeyboardInterrupt, or the SystemExit(128 + N) that
    cli.py's SIGTERM/SIGHUP handler raises; 0 for anything else."""
    if isinstance(exc, KeyboardInterrupt):
        return int(signal.SIGINT)
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code > 128:
        return exc.code - 128
    return 0


def signal_name(exc: BaseException) -> str:
    """"SIGINT", "SIGTERM" ... for a stop by a signal, else the exception's class name."""
    n = signal_of(exc)
    return signal.Signals(n).name if n else type(exc).__name__


def _incomplete(run: ScanRun) -> list[str]:
    info = run.stats.get("interrupted") if isinstance(run.stats, dict) else None
    return list(info.get("incomplete") or []) if isinstance(info, dict) else []


def emit_outputs(
    run: ScanRun,
    *,
    oJ: str | Path | None = None,
    oX: str | Path | None = None,
    oG: str | Path | None = None,
    oN: str | Path | None = None,
    db: str | Path | None = None,
    record: bool = True,
) -> list[str]:
    """Write each requested file ('-' = stdout) and record the run in the inventory.

    Every output is attempted even when one fails; a run the inventory cannot take goes to a
    recovery file. Returns the paths written (plus the inventory or recovery file); UsageError
    naming every failure after the rest was written."""
    return RunOutputs(oJ=oJ, oX=oX, oG=oG, oN=oN, db=db, record=record).finish(run)
