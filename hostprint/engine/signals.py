"""Critical sections that a signal must not cut in half.

Ctrl-C twice in quick succession used to interrupt the RST guard's removal (the `nft` call was
killed by the KeyboardInterrupt the second SIGINT raised, or by the terminal's SIGINT reaching the
child), leaving a table that kept dropping replies. `deferred()` holds SIGINT, SIGTERM and SIGHUP
for the length of a block: a signal that arrives meanwhile is noted and delivered to the handler
that was in place as soon as the block ends, so the process still stops, but only after the block.

Signal handlers can only be changed from the main thread; elsewhere the block runs unprotected.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def deferred(sigs: tuple[int, ...] = HELD) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def note(signum: int, frame: object) -> None:
        pending.append(signum)

    old: dict[int, object] = {}
    for s in sigs:
        try:
            prev = signal.getsignal(s)
            if prev is None:  # installed from C: cannot be restored from Python, leave it
                continue
            signal.signal(s, note)
            old[s] = prev
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        for s in dict.fromkeys(pending):
            if old.get(s) not in (signal.SIG_IGN, None):
                signal.raise_signal(s)  # now handled by the handler restored above


def subprocess_kwargs() -> dict[str, object]:
    """Keyword arguments that keep a helper process out of the terminal's process group, so the
    SIGINT of a Ctrl-C reaches only us (and we decide when to stop), never a half-done `nft -f`."""
    return {"process_group": 0}
