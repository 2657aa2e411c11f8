"""A real PostgreSQL server for tests and benchmarks: Debian's package, its own data directory in a
temporary directory, run as the `postgres` user on a unix socket only (no TCP port), stopped by PID
and removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time


def pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


class PgServer:
    def __init__(self, user: str = "hostprint", db: str = "hostprint"):
        self.bindir = pg_bin()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian's postgresql package; scripts/setup.sh)")
        self.user, self.db = user, db
        self.tmp = tempfile.mkdtemp(prefix="hostprint-pg-")
        os.chmod(self.tmp, 0o755)
        self.data = os.path.join(self.tmp, "data")
        self.sock = os.path.join(self.tmp, "sock")
        self.port = 5400 + os.getpid() % 500  # names the socket file only: nothing listens on TCP
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              check=True, **kw)  # type: ignore[call-overload]

    def start(self) -> PgServer:
        os.makedirs(self.sock)
        shutil.chown(self.tmp, "postgres", "postgres")
        shutil.chown(self.sock, "postgres", "postgres")
        self._as_postgres([f"{self.bindir}/initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8"])
        self.proc = subprocess.Popen(["runuser", "-u", "postgres", "--", f"{self.bindir}/postgres", "-D", self.data,
                                      "-k", self.sock, "-p", str(self.port), "-c", "listen_addresses="],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        while subprocess.run([f"{self.bindir}/pg_isready", "-h", self.sock, "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres did not start: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.1)
        self._as_postgres([f"{self.bindir}/createdb", "-h", self.sock, "-p", str(self.port), "-U", self.user, self.db])
        return self

    def url(self, db: str | None = None) -> str:
        return f"postgresql://{self.user}@/{db or self.db}?host={self.sock}&port={self.port}"

    def createdb(self, name: str) -> str:
        self._as_postgres([f"{self.bindir}/createdb", "-h", self.sock, "-p", str(self.port), "-U", self.user, name])
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT is postgres's "fast shutdown"; runuser does not pass it on (the stop waited its
            # whole 30 s timeout), so it goes to the server's own process group (start_new_session)
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PgServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
