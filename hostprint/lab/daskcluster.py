"""Dask "machines" in the lab (issue 21): a namespace for `dask scheduler` and one per `dask
worker`, each on the lab's bridge with its own address, started with Dask's own CLI as a user
would on real machines. The cluster tests and bench/cluster share this one set-up, so what the
benchmark measures is the set-up the tests check.

Everything that talks to the scheduler runs inside the lab (the scanner namespace): a Dask client
in the root namespace would send its SYN to 198.18.0.20 through the default route.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from hostprint.lab.spec import HostSpec

SCHED = "198.18.0.20"
WORKERS = {"w1": "198.18.0.21", "w2": "198.18.0.22", "w3": "198.18.0.23"}
PORT = 8786


def machine_hosts(workers: dict[str, str] | None = None, sched: str = SCHED) -> list[HostSpec]:
    """The scheduler's and the workers' namespaces, to add to a LabSpec's hosts."""
    return [HostSpec(name="sched", address=sched),
            *[HostSpec(name=n, address=a) for n, a in (WORKERS if workers is None else workers).items()]]


class DaskCluster:
    """`dask scheduler` in the lab's `sched` namespace and one `dask worker` (one thread, no nanny:
    a killed worker stays dead) in each named worker namespace; started and stopped here by PID.
    `pythonpath`: where the workers import hostprint from (the tree under test)."""

    def __init__(self, lab, workers: list[str], pythonpath: str, *, addresses: dict[str, str] | None = None,
                 sched: str = SCHED):
        self.lab, self.names = lab, list(workers)
        self.addresses = WORKERS if addresses is None else addresses
        self.sched = sched
        self.address = f"tcp://{sched}:{PORT}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PYTHONPATH": pythonpath, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}

    def _spawn(self, ns: str, argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.lab.resolve_ns(ns), *argv], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def __enter__(self) -> DaskCluster:
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        dask = dask if os.path.exists(dask) else "dask"
        try:
            self.procs["sched"] = self._spawn("sched", [dask, "scheduler", "--host", self.sched, "--port", str(PORT),
                                                        "--no-dashboard"])
            for n in self.names:
                self.start_worker(n, wait=False)
            self.wait_workers(len(self.names))
        except BaseException:
            self.__exit__()
            raise
        return self

    def start_worker(self, name: str, wait: bool = True) -> None:
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        dask = dask if os.path.exists(dask) else "dask"
        self.procs[name] = self._spawn(name, [dask, "worker", self.address, "--host", self.addresses[name],
                                              "--nthreads", "1", "--no-nanny", "--name", name, "--no-dashboard"])
        if wait:
            self.wait_workers(sum(1 for n, p in self.procs.items() if n != "sched" and p.poll() is None))

    def python(self, code: str, timeout: float = 120) -> str:
        """Run Python code in the scanner namespace (where the scheduler is reachable); its stdout."""
        r = self.lab.exec("scan", [sys.executable, "-c", code], capture_output=True, text=True, env=self.env,
                          timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"dask client code failed: {r.stderr[-2000:]}")
        return str(r.stdout)

    def wait_workers(self, n: int) -> None:
        self.python(f"from distributed import Client\n"
                    f"with Client({self.address!r}, timeout=60) as c: c.wait_for_workers({n}, timeout=60)\n")

    def overhead_per_task(self, n: int = 200) -> float:
        """The scheduler's round trip for an empty task, from the scanner namespace (seconds)."""
        out = self.python(f"import time\nfrom distributed import Client\nwith Client({self.address!r}) as c:\n"
                          f" c.gather(c.map(abs, range(-10, 0), pure=False))\n"
                          f" t=time.monotonic(); c.gather(c.map(abs, range({n}), pure=False));"
                          f" print(time.monotonic()-t)\n")
        return float(out.strip().splitlines()[-1]) / n

    def kill(self, name: str) -> None:
        """SIGKILL one worker by PID (a machine that dies)."""
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def busy(self, name: str) -> bool:
        """The worker runs a shard now (its hostprint child process exists)."""
        pid = self.procs[name].pid
        kids = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        return "hostprint" in kids

    def __exit__(self, *exc: object) -> None:
        for p in reversed(list(self.procs.values())):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()
