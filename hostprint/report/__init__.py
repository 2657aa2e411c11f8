"""Every way hostprint hands results back: JSON lines, nmap XML / grepable / normal files, the
terminal, and the SQLite inventory.

`emit_outputs` is the one call the CLI makes at the end of a run, so every command writes the same
set of files the same way and a bad output path fails the same way (UsageError naming the path).
"""

from __future__ import annotations

from pathlib import Path

from hostprint.model import ScanRun


def _write_text(path: str | Path, text: str, what: str) -> None:
    import sys

    from hostprint.errors import UsageError

    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8") as fp:
            fp.write(text)
    except OSError as e:
        raise UsageError(f"cannot write {what} output {path}: {e.strerror or e}") from None


def check_output_paths(**paths: str | Path | None) -> None:
    """Fail before a scan starts, not after it, when an output file cannot be written.

    Checks without creating or truncating anything: the directory must exist and be writable, and
    an existing file must be a writable regular file. Keyword names are used in the message.
    """
    import os

    from hostprint.errors import UsageError

    for opt, path in paths.items():
        if path is None or str(path) == "-":
            continue
        p = Path(path)
        parent = p.parent if str(p.parent) else Path(".")
        if p.exists():
            if not p.is_file() or not os.access(p, os.W_OK):
                raise UsageError(f"cannot write {opt} output {path}: not a writable file")
        elif not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write {opt} output {path}: directory {parent} is missing or not writable")


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

    Files are written before the inventory so that a locked database cannot cost the user the
    report files. Pass oJ=None when JSON lines were already streamed with JsonlWriter during the
    scan. Returns the paths written, plus the inventory path when recorded.
    """
    from hostprint.report.grepable import format_grepable
    from hostprint.report.inventory import Inventory
    from hostprint.report.jsonl import JsonlWriter
    from hostprint.report.nmapxml import to_xml
    from hostprint.report.normal import format_normal

    written: list[str] = []
    if oJ is not None:
        with JsonlWriter(oJ) as w:
            for h in run.hosts:
                w.write_host(run, h)
        written.append(str(oJ))
    if oX is not None:
        _write_text(oX, to_xml(run), "XML")
        written.append(str(oX))
    if oG is not None:
        _write_text(oG, format_grepable(run), "grepable")
        written.append(str(oG))
    if oN is not None:
        _write_text(oN, format_normal(run), "normal")
        written.append(str(oN))
    if record:
        with Inventory(db) as inv:
            inv.record_run(run)
            written.append(str(inv.path))
    return written
