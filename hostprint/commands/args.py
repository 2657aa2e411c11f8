"""Checks of command-line values the commands share: one wording for every bad value."""

from __future__ import annotations

import math
from typing import TypeVar

from hostprint.errors import UsageError

N = TypeVar("N", int, float)


def positive(text: str | None, opt: str, cast: type[N] = int) -> N | None:  # type: ignore[assignment]
    """None when not given; else a finite number > 0, or one line naming the option and value."""
    if text is None:
        return None
    try:
        v = cast(text)
    except ValueError:
        raise UsageError(f"bad {opt} value {text!r}: expected a positive number") from None
    if v <= 0 or (isinstance(v, float) and not math.isfinite(v)):
        raise UsageError(f"bad {opt} value {text!r}: expected a positive number")
    return v


def finite(v: float | None, opt: str, *, low: float = 0.0, high: float | None = None) -> float | None:
    """None, or a finite number in (low, high]; one line naming the option otherwise."""
    if v is None:
        return None
    if not math.isfinite(v) or v <= low or (high is not None and v > high):
        rng = f"{low:g} < {opt} <= {high:g}" if high is not None else f"> {low:g}"
        raise UsageError(f"bad {opt} value '{v}': expected a finite number {rng}")
    return v


def text_file(path: str, opt: str) -> None:
    """A file the user names for a reader that expects text: readable and UTF-8, or one line naming
    the option, the file and the first byte that is not text (binary files made tracebacks)."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        return  # the reader names a missing file in its own words
    if p.is_dir():
        raise UsageError(f"{opt} {path}: is a directory, expected a text file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"{opt} {path}: {e.strerror or e}") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{opt} {path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None
    nul = data.find(0)
    if nul >= 0:
        raise UsageError(f"{opt} {path}: not a text file (NUL byte at offset {nul})")


def timing_db_files(spec: str | None, mapping: str | None = None) -> None:
    """--timing-db FILE is UTF-8 text, checked before the DB reader runs (which reads it strictly; the
    mapping file is read leniently and needs no check)."""
    if spec and spec not in ("hostprint", "builtin", "hershel420", "hershel116"):
        text_file(spec, "--timing-db")
