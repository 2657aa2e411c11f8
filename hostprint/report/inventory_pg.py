"""The inventory on a PostgreSQL server (`--db postgresql://USER@HOST/DB`, psycopg 3): the same
tables, columns, indexes, queries and migrations as the SQLite inventory (report/inventory.py,
whose statements this module runs with PostgreSQL's placeholders and column types), for a cluster
whose runs meet in one place, or several machines that record into one inventory.

Behaviour that differs from SQLite, by nature of a server: concurrency is the server's (no write
lock to wait for; a write that meets a lost connection, a deadlock or a serialization failure is
retried with backoff for up to `timeout` seconds, default $HOSTPRINT_DB_TIMEOUT); "damage" is
what the server reports; creating the schema and each migration take a transaction-level advisory
lock, so two hostprints meeting a new database create it once. The password of a URL is never
printed. A run the server cannot take goes to a recovery file, as with SQLite.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from hostprint.errors import UsageError
from hostprint.model import HostResult, ScanRun
from hostprint.report import inventory as sq

T = TypeVar("T")
#: pg_advisory_xact_lock key of schema creation and migrations ("hostprnt")
_LOCK = 0x686F73747072_6E74 & 0x7FFFFFFFFFFFFFFF


def is_url(db: object) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password (user:secret@ -> user:***@; ?password=… too)."""
    url = re.sub(r"^(postgres(?:ql)?://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def ddl() -> list[str]:
    """The SQLite schema in PostgreSQL's types: 64-bit integers and floats, a serial id."""
    out = []
    for stmt in filter(str.strip, sq._SCHEMA.split(";")):
        stmt = "\n".join(line.split("--", 1)[0].rstrip() for line in stmt.splitlines())
        stmt = stmt.replace("id INTEGER PRIMARY KEY", "id BIGSERIAL PRIMARY KEY")
        stmt = re.sub(r"\bINTEGER\b", "BIGINT", stmt)
        stmt = re.sub(r"\bREAL\b", "DOUBLE PRECISION", stmt)
        out.append(stmt.strip())
    return out


def pg(sql: str) -> str:
    """A statement of report/inventory.py with PostgreSQL's placeholders and no rowid."""
    return sql.replace("?", "%s").replace("r.rowid", "r.id").replace("rowid", "id")


class _Tx:
    """The connection as the shared statements and migrations see it: execute(sql, params) with ?
    placeholders, executemany(sql, rows)."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self.conn.execute(pg(sql), tuple(params))

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(pg(sql), rows)


class PgInventory(sq.InventoryBase):
    """One inventory database on a PostgreSQL server; the SQLite Inventory's methods."""

    def __init__(self, url: str, *, timeout: float | None = None, create: bool = True):
        self.url = url
        self.path = redact(url)  # what messages name
        self.timeout = sq.lock_wait() if timeout is None else timeout
        self.writable = create
        self._conn: Any = None
        self._connect()
        self._ensure_schema(create)

    # -- plumbing -------------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            import psycopg
        except ImportError:
            raise UsageError("--db postgresql://… needs psycopg 3: pip install '.[cluster]' (hostprint's "
                             "cluster extra)") from None
        deadline = time.monotonic() + min(self.timeout, 3.0)
        pause = 0.1
        while True:
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(2, int(min(self.timeout, 10))))
                return
            except psycopg.OperationalError as e:
                if time.monotonic() + pause > deadline:
                    raise UsageError(f"inventory {self.path}: cannot connect ({_first_line(e)})") from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            except psycopg.Error as e:
                raise UsageError(f"inventory {self.path}: {_first_line(e)}") from None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as e:
            raise UsageError(f"inventory {self.path}: {_first_line(e)}") from None

    def _write(self, body: Callable[[_Tx], T]) -> T:
        """`body` in one transaction; a lost connection, deadlock or serialization failure is retried
        with growing, jittered pauses for up to `self.timeout` seconds."""
        import psycopg
        from psycopg import errors as pe

        deadline = time.monotonic() + self.timeout
        pause = 0.05
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._connect()
                with self._conn.transaction():
                    return body(_Tx(self._conn))
            except (psycopg.OperationalError, pe.SerializationFailure, pe.DeadlockDetected) as e:
                if time.monotonic() + pause > deadline:
                    raise UsageError(f"inventory {self.path}: {_first_line(e)}") from None
                time.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 1.0)
            except psycopg.Error as e:
                raise UsageError(f"inventory {self.path}: {_first_line(e)}") from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors():
            return list(_Tx(self._require()).execute(sql, params).fetchall())

    def _require(self) -> Any:
        if self._conn is None:
            raise UsageError(f"inventory {self.path} is not connected")
        return self._conn

    def _tables(self) -> set[str]:
        rows = self._read("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {r[0] for r in rows}

    def _ensure_schema(self, create: bool) -> None:
        tables = self._tables()
        if not tables & {"runs", "schema_version"}:
            if not create:
                raise UsageError(f"no runs recorded: inventory {self.path} has no hostprint tables")

            def make(c: _Tx) -> None:
                c.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
                if c.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
                    for stmt in ddl():
                        c.conn.execute(stmt)
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (sq.SCHEMA_VERSION,))

            self._write(make)
            return
        if "schema_version" not in tables:
            raise UsageError(f"database {self.path} has tables but is not a hostprint inventory; it was left untouched")
        version = self._read("SELECT MAX(version) FROM schema_version")[0][0]
        if not isinstance(version, int) or version > sq.SCHEMA_VERSION:
            raise UsageError(f"inventory {self.path} has schema version {version}, this hostprint reads up to "
                             f"{sq.SCHEMA_VERSION}")
        missing = {"runs", "hosts", "ports", "extraports", "observations"} - tables
        if missing:
            raise UsageError(f"inventory {self.path} is damaged: table(s) {', '.join(sorted(missing))} missing; "
                             f"it was left untouched")
        for target, step in sq.MIGRATIONS:
            if version < target:
                def apply(c: _Tx, target: int = target, step: Any = step) -> None:
                    c.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
                    now = c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                    if isinstance(now, int) and now >= target:
                        return
                    step(c)
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))

                self._write(apply)

    def check_health(self, *, thorough: bool = True) -> None:
        if thorough:
            for rid, *cols in self._read("SELECT id, args, scan_types, stats FROM runs"):
                for name, text in zip(("args", "scan types", "stats"), cols):
                    self._json(text, None, f"the {name} of run {rid}")

    def check_writable(self) -> None:
        """This role may write every table (nothing is written)."""
        for t in ("runs", "hosts", "ports", "extraports", "observations"):
            ok = self._read(f"SELECT has_table_privilege(current_user, '{t}', 'INSERT')")[0][0]
            if not ok:
                raise UsageError(f"inventory {self.path}: this role may not write table {t}")

    # -- writing (as report/inventory.py) -------------------------------------------------------

    def record_run(self, run: ScanRun, hosts: Iterable[HostResult] | None = None) -> None:
        self._write(lambda c: _forget(c, run.id))
        rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]] = ([], [], [])

        def flush() -> None:
            if any(rows):
                self._write(lambda c: _insert(c, rows))
                for r in rows:
                    r.clear()

        for i, h in enumerate(run.hosts if hosts is None else hosts):
            sq.add_host_rows(rows, run.id, i, h)
            if sum(map(len, rows)) >= sq.CHUNK_ROWS:
                flush()
        flush()
        self._write(lambda c: c.execute(sq._RUN_SQL, sq.run_row(run)))

    def begin_run(self, run: ScanRun) -> None:
        def begin(c: _Tx) -> None:
            _forget(c, run.id)
            c.execute(sq._RUN_SQL, sq.run_row(run, finished=None))

        self._write(begin)

    def add_hosts(self, run_id: str, hosts: Iterable[tuple[int, HostResult]]) -> None:
        rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]] = ([], [], [])
        idxs = []
        for i, h in hosts:
            sq.add_host_rows(rows, run_id, i, h)
            idxs.append((run_id, i))

        def add(c: _Tx) -> None:
            for table, col in (("hosts", "idx"), ("ports", "host_idx"), ("extraports", "host_idx")):
                c.executemany(f"DELETE FROM {table} WHERE run_id = ? AND {col} = ?", idxs)
            _insert(c, rows)

        self._write(add)

    def finish_run(self, run: ScanRun) -> None:
        self._write(lambda c: c.execute("UPDATE runs SET finished = ?, stats = ?, ports_scanned = ? WHERE id = ?",
                                        (run.finished, sq._dumps(run.stats),
                                         sq._encode_ports_scanned(run.ports_scanned), run.id)))

    def add_observation(self, run_id: str, address: str, kind: str, data: Any) -> None:
        self.add_observations(run_id, [(address, kind, data)])

    def add_observations(self, run_id: str, items: Iterable[tuple[str, str, Any]]) -> None:
        now = time.time()
        rows = [(run_id, a, k, sq._dumps(d), now) for a, k, d in items]
        for i in range(0, len(rows), sq.CHUNK_ROWS):
            chunk = rows[i:i + sq.CHUNK_ROWS]
            self._write(lambda c, chunk=chunk: c.executemany(  # type: ignore[misc]
                "INSERT INTO observations (run_id, address, kind, data, ts) VALUES (?, ?, ?, ?, ?)", chunk))

    def import_file(self, path: str) -> list[str]:
        ids = []
        for run, observations in sq.read_recovery(path):
            self.record_run(run)
            if observations:
                self._write(lambda c, rid=run.id: c.execute(  # type: ignore[misc]
                    "DELETE FROM observations WHERE run_id = ?", (rid,)))
                self.add_observations(run.id, observations)
            ids.append(run.id)
        return ids

    # -- reading --------------------------------------------------------------------------------

    def observations(self, run_id: str, address: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT address, kind, data, ts FROM observations WHERE run_id = ?"
        params: list[Any] = [run_id]
        if address is not None:
            sql += " AND address = ?"
            params.append(address)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        return [{"address": a, "kind": k, "data": self._json(d, None, f"an observation of run {run_id}"), "ts": ts}
                for a, k, d, ts in self._read(sql + " ORDER BY id", params)]

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql, params = sq._RUNS_SQL, cast(tuple[Any, ...], ())
        if limit is not None:
            sql, params = sql + " LIMIT ?", (int(limit),)
        return sq.runs_from_rows(self, self._read(sql, params))

    def resolve_run(self, spec: str) -> str:
        spec = str(spec).strip()
        if not spec:
            raise UsageError("empty run id")
        if spec == "last" or (spec.startswith("-") and spec[1:].isdigit()):
            n = 1 if spec == "last" else int(spec[1:])
            if n < 1:
                raise UsageError(f"bad run id {spec}: use -1 for the newest run")
            rows = self._read("SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 1 OFFSET ?", (n - 1,))
            if not rows:
                raise UsageError(f"no run {spec} in inventory {self.path}")
            return str(rows[0][0])
        ids = [r[0] for r in self._read("SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY started DESC LIMIT 6",
                                        (len(spec), spec))]
        if not ids:
            raise UsageError(f"no run {spec} in inventory {self.path}")
        if len(ids) > 1:
            raise UsageError(f"run id {spec} is ambiguous: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}")
        return str(ids[0])

    def load_run(self, spec: str) -> ScanRun:
        run_id = self.resolve_run(spec)
        r = self._read(sq._LOAD_RUN_SQL, (run_id,))[0]
        return sq.assemble_run(self, r, self._read(sq._LOAD_HOSTS_SQL, (run_id,)),
                               self._read(sq._LOAD_PORTS_SQL, (run_id,)), self._read(sq._LOAD_EXTRA_SQL, (run_id,)))


def _forget(c: _Tx, run_id: str) -> None:
    for table in sq._RUN_TABLES:
        c.execute(f"DELETE FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} = ?", (run_id,))


def _insert(c: _Tx, rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]) -> None:
    c.executemany(sq._HOST_SQL, rows[0])
    c.executemany(sq._PORT_SQL, rows[1])
    c.executemany(sq._EXTRA_SQL, rows[2])


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
