"""A pickle cache for things built from a user's installed file (nmap-services, nmap-os-db).

Parsing those files costs 0.3–2 s of a run that should take one second; unpickling the result
costs ~20–200 ms. Entries are keyed by the file's absolute path, size and mtime, so an updated file
is read again; any cache problem (missing, stale, unreadable, unwritable) just means "build it".
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hostprint")


def from_file(path: str, kind: str, build: Callable[[], T], version: int = 1,
              keep: Callable[[T], bool] | None = None) -> T:
    """`build()` once per (path, size, mtime, version); later calls unpickle the stored result.
    A result `keep` refuses (a file that is not what it claims to be) is returned, not stored:
    input the command is about to reject leaves nothing behind."""
    try:
        st = os.stat(path)
    except OSError:
        return build()
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{version}".encode()).hexdigest()[:16]
    cache = os.path.join(cache_dir(), f"{kind}-{key}.pickle")
    try:
        with open(cache, "rb") as fh:
            obj: T = pickle.load(fh)
            return obj
    except Exception:  # noqa: BLE001 - any cache problem means: build it
        pass
    value = build()
    if keep is not None and not keep(value):
        return value
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
    except OSError:
        pass
    return value
