"""JSON lines output: one object per host, written the moment the host is finished.

Streaming per host (not one document at the end) lets a long scan be piped into `jq` or another
program while it runs, and leaves every finished host on disk if the scan is interrupted.
The object is exactly `ScanRun.host_record(host)` (the schema in the README).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import IO, Any

from hostprint.errors import UsageError
from hostprint.model import HostResult, ScanRun


def _json_default(o: Any) -> Any:
    """Probe results may hold raw bytes, sets or dataclasses; never let one kill the report."""
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).decode("latin-1")
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def _finite(o: Any) -> Any:
    """NaN/Infinity are not JSON; jq and most parsers reject them. Report them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def dumps_record(record: dict[str, Any]) -> str:
    return json.dumps(_finite(record), default=_json_default, ensure_ascii=False, allow_nan=False)


class JsonlWriter:
    """Append-as-you-go writer for a path, or '-' for stdout (which is never closed)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._owns = self.path != "-"
        if self._owns:
            try:
                self._fp: IO[str] = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as e:
                raise UsageError(f"cannot write JSON lines output {self.path}: {e.strerror or e}") from None
        else:
            self._fp = sys.stdout
        self.count = 0

    def write_host(self, run: ScanRun, host: HostResult) -> None:
        try:
            self._fp.write(dumps_record(run.host_record(host)) + "\n")
            self._fp.flush()
        except OSError as e:
            raise UsageError(f"cannot write JSON lines output {self.path}: {e.strerror or e}") from None
        self.count += 1

    def close(self) -> None:
        if self._owns and not self._fp.closed:
            self._fp.close()
        elif not self._owns:
            self._fp.flush()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
