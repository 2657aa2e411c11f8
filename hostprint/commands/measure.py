"""The one way a measuring command runs its techniques so that nothing measured is lost (issue 13):
scan, discover and `timing` wrap their run in `measure`; amap, which runs one technique over the
ports it was given, uses the same runner state and outputs (commands/amap.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any

from hostprint import model
from hostprint.engine.signals import deferred
from hostprint.probes import runner
from hostprint.probes.base import Progress, Session
from hostprint.report import RunOutputs


def measure(go: Callable[[], Coroutine[Any, Any, list[model.HostResult]]], *, run: model.ScanRun,
            session: Session, state: runner.RunState, outputs: RunOutputs,
            progress: AbstractContextManager[Progress], only_open: bool = False,
            before: Sequence[model.HostResult] = (),
            settle: Callable[[list[model.HostResult]], None] | None = None) -> list[model.HostResult]:
    """`asyncio.run(go())` with `progress` on the session, which is closed afterwards; `go` runs the
    techniques with `state` (probes/runner.py). When a signal (Ctrl-C, SIGTERM, SIGHUP) or an error
    stops it: the hosts as far as they got — finished ones, and in-progress ones with the running
    technique's partial results (runner.partial_hosts) — go to every output and the inventory
    (RunOutputs.abort, the hosts not finished marked incomplete), then Interrupted (exit 128+N, one
    line saying where) or the error is raised. A further signal meanwhile waits until that is done.
    `before`: hosts finished by an earlier run (--resume), written in front. `settle`: the command's
    own last step over the hosts of a stopped run before they are written (amap: port states from
    the reports in `state.partial`)."""
    try:
        with progress as prog:
            session.progress = prog
            try:
                return asyncio.run(go())
            finally:
                session.close()
    except BaseException as e:  # Ctrl-C, SIGTERM, an error: what was measured goes to every output
        err: BaseException = e
        try:
            with deferred():
                run.stats.update(session.stats)
                hosts = runner.partial_hosts(state, session, only_open=only_open)
                if settle is not None:
                    settle(hosts)
                err = outputs.abort(run, [*before, *hosts], state.phase, e, measured=state.measured)
        except (KeyboardInterrupt, SystemExit):
            pass  # a second signal, delivered once the outputs were written: leave with the first's line
        raise err from None
