"""The lab's footprint on disk, so any process (a later `hostprint lab down`, a crashed test's
successor) can tear a lab down without having built it.

PIDs are stored with their kernel start time: a PID from an old state file may have been reused by
an unrelated process, and we kill only a process that is provably the one we started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

STATE_DIR = Path(os.environ.get("HOSTPRINT_LAB_STATE_DIR", "/run/hostprint"))


def state_path(name: str) -> Path:
    return STATE_DIR / f"lab-{name}.json"


def write_state(name: str, state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    p = state_path(name)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(p)


def read_state(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(name).read_text())
    except (OSError, ValueError):
        return None


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    try:
        if rest[0] == "Z":
            return None
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def pid_record(pid: int, what: str) -> dict[str, Any]:
    return {"pid": pid, "start": proc_start_time(pid), "what": what}


def is_same_process(rec: dict[str, Any]) -> bool:
    st = proc_start_time(int(rec["pid"]))
    return st is not None and st == rec.get("start")


def kill_records(records: list[dict[str, Any]], grace: float = 2.0) -> None:
    """SIGTERM each still-identical process (its whole session if it leads one), then SIGKILL.

    Daemons are started with start_new_session=True, so pgid == pid and the group holds exactly
    the daemon's own children (nginx workers, sshd per-connection children).
    """
    alive = [r for r in records if is_same_process(r)]
    for r in alive:
        _signal(int(r["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = [r for r in alive if is_same_process(r)]
        if alive:
            time.sleep(0.02)
    for r in alive:
        _signal(int(r["pid"]), signal.SIGKILL)
    # Reap if they are our children (in-process labs); harmless otherwise.
    for r in records:
        try:
            os.waitpid(int(r["pid"]), os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def kill_child(proc: subprocess.Popen[Any], wait: float = 10) -> None:
    """SIGKILL a process this one started (a Popen, so its PID cannot have been reused) and reap
    it; one that has not died within `wait` seconds is left to the lab's teardown."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def list_netns() -> list[str]:
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def _own_lineage() -> set[int]:
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def kill_netns_pids(ns: str) -> None:
    """Kill what still runs inside a namespace this lab created (e.g. a scanner started by a test
    with lab.exec that outlived it). Never our own process or its ancestors."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    mine = _own_lineage()
    recs = [pid_record(int(p), "stray") for p in out.split() if p.isdigit() and int(p) not in mine]
    if recs:
        kill_records(recs, grace=1.0)


def teardown(state: dict[str, Any]) -> list[str]:
    """Undo everything a state file lists. Never raises; returns a list of problems for display."""
    problems: list[str] = []
    try:
        kill_records(list(state.get("pids", [])))
    except Exception as e:  # noqa: BLE001 - teardown must go on
        problems.append(f"killing pids: {e}")
    existing = set(list_netns())
    for ns in state.get("namespaces", []):
        if ns not in existing:
            continue
        try:
            kill_netns_pids(ns)
        except Exception as e:  # noqa: BLE001
            problems.append(f"pids in {ns}: {e}")
        r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
    tmp = state.get("tmpdir")
    if tmp and Path(tmp).name.startswith("hostprint-lab-"):
        shutil.rmtree(tmp, ignore_errors=True)
    for d in state.get("etc_netns", []) or []:
        # only the per-namespace config directories a lab made (/etc/netns/hpl-...)
        if Path(d).parent == Path("/etc/netns") and Path(d).name.startswith("hpl-"):
            shutil.rmtree(d, ignore_errors=True)
            try:
                Path(d).parent.rmdir()  # only when empty: another namespace's files stay
            except OSError:
                pass
    return problems
