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
