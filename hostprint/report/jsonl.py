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
    try:  # plain JSON data (nearly every record) in one pass; odd values take the careful path
        return json.dumps(record, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_finite(record), default=_json_default, ensure_ascii=False, allow_nan=False)


class JsonlWriter:
    """Append-as-you-go writer for a path, or '-' for stdout (which is never closed).

    Host records are flushed one by one (a finished host is on disk at once); `buffered=True`
    keeps a 1 MB buffer for streams of many small records (passive observations), flushed at
    `close()`."""

    def __init__(self, path: str | Path, *, buffered: bool = False):
        self.path = str(path)
        self._owns = self.path != "-"
        self.buffered = buffered
        if self._owns:
            try:
                self._fp: IO[str] = open(self.path, "w", encoding="utf-8",  # noqa: SIM115
                                         buffering=(1 << 20) if buffered else -1)
            except OSError as e:
                raise UsageError(f"cannot write JSON lines output {self.path}: {e.strerror or e}") from None
        else:
            self._fp = sys.stdout
        self.count = 0

    def write_line(self, line: str) -> None:
        """One record already encoded as JSON (ending in a newline)."""
        if len(line) > 65536 and self._owns:
            # many records at once: encoded here and handed to the binary layer;
            # TextIOWrapper.write of a multi-megabyte string measured 3-10x slower
            self.write_bytes(line.encode("utf-8"))
            return
        try:
            self._fp.write(line)
            if not self.buffered:
                self._fp.flush()
        except OSError as e:
            raise UsageError(f"cannot write JSON lines output {self.path}: {e.strerror or e}") from None
        self.count += 1

    def write_bytes(self, data: bytes) -> None:
        """Records already encoded as JSON lines in UTF-8 (passive's grouped SYNs), written to the
        binary layer after what the text layer holds."""
        raw = getattr(self._fp, "buffer", None) if self._owns else None
        if raw is None:  # stdout: as text (it may be a stream without a binary layer)
            self.write_line(data.decode("utf-8"))
            return
        try:
            self._fp.flush()
            raw.write(data)
            if not self.buffered:
                raw.flush()
        except OSError as e:
            raise UsageError(f"cannot write JSON lines output {self.path}: {e.strerror or e}") from None
        self.count += 1

    def write_record(self, record: dict[str, Any]) -> None:
        self.write_line(dumps_record(record) + "\n")

    def write_host(self, run: ScanRun, host: HostResult, **extra: Any) -> None:
        """The host record of the README's schema (`extra` keys first, e.g. passive's "type")."""
        self.write_record({**extra, **run.host_record(host)})

    def close(self) -> None:
        if self._owns and not self._fp.closed:
            self._fp.close()
        elif not self._owns:
            self._fp.flush()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
