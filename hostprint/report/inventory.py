"""The SQLite inventory: every run hostprint made, so results can be listed, reloaded, compared and
re-rendered later in any output format without scanning again.

Safety rules this module keeps: an existing file is never deleted or recreated (a corrupt, foreign
or locked database is reported as a UsageError naming its path and left alone); a damaged file (its
size no whole number of pages, a failing `PRAGMA quick_check`, a column that is not JSON) is
reported and never written; recording the same run twice replaces it instead of duplicating it.
`schema_version` lets later releases migrate.

Concurrency: the file is in WAL mode (readers never block the writer and are never blocked), and a
run is written in short transactions of at most CHUNK_ROWS rows (hosts, ports, extraports first,
the `runs` row last: a reader never sees half a run, a crash leaves only rows no run points to),
each retried with backoff while another process holds the write lock, for up to `timeout` seconds
in all (default 30, $HOSTPRINT_DB_TIMEOUT). So a large `passive` import and a scan that ends
meanwhile both get their turn. A run that still cannot be written (lock held for longer, disk full,
read-only, damaged) is saved to a recovery file (`save_recovery`) that `hostprint history --import
FILE` reads back; the caller says where on stderr.

`check_inventory` is the check before the first packet: the file can be opened, has our schema,
is not damaged, and its write lock can be taken (or, for a new file, its directory takes a file).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Self, TypeVar, cast

from hostprint.errors import UsageError
from hostprint.model import ExtraPorts, HostResult, OsEvidence, PortResult, ScanRun, Service
from hostprint.report.jsonl import dumps_record
from hostprint.report.nmapstyle import port_ranges

SCHEMA_VERSION = 3
# 2: `hosts.os` holds model.OsEvidence.to_dict() with the combined verdict of every technique
#    (version 1 rows: loose per-technique dicts; passive rows had `os.passive.os` and no verdict).
# 3: `hosts.extra` (json or NULL): the host's names with their types, warnings, traceroute hops
#    (which version 2 dropped) and --dual-stack's addresses of the other family. The same migrations run on SQLite and PostgreSQL (MIGRATIONS).

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    args TEXT NOT NULL,           -- json list
    scan_types TEXT NOT NULL,     -- json list
    ports_scanned TEXT NOT NULL,  -- json {protocol: "1-1024,8080" | [ports in scan order]}
    stats TEXT NOT NULL           -- json
);
CREATE TABLE hosts (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,         -- position in ScanRun.hosts
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    reasons TEXT NOT NULL,        -- json list
    hostname TEXT,
    mac TEXT,
    distance INTEGER,
    rtt_us REAL,
    os TEXT NOT NULL,             -- json
    sequence TEXT NOT NULL,       -- json
    started REAL,
    finished REAL,
    extra TEXT,                   -- json {hostnames, warnings, trace, addresses} or NULL (schema 3)
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE ports (
    run_id TEXT NOT NULL,
    host_idx INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    protocol TEXT NOT NULL,
    port INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    reason_ttl INTEGER,
    service TEXT,                 -- json Service.to_dict() or NULL
    PRIMARY KEY (run_id, host_idx, idx)
);
CREATE TABLE extraports (
    run_id TEXT NOT NULL,
    host_idx INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    count INTEGER NOT NULL,
    reasons TEXT NOT NULL,        -- json {reason: count}
    PRIMARY KEY (run_id, host_idx, idx)
);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,           -- json
    ts REAL NOT NULL
);
CREATE INDEX hosts_address ON hosts (address);
CREATE INDEX ports_address ON ports (address, protocol, port);
CREATE INDEX observations_run ON observations (run_id, address, kind);
CREATE INDEX runs_started ON runs (started);
"""

_RUN_TABLES = ("hosts", "ports", "extraports", "runs")
_HOST_SQL = ("INSERT INTO hosts (run_id, idx, address, status, reasons, hostname, mac, distance, rtt_us, os, sequence,"
             " started, finished, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_PORT_SQL = ("INSERT INTO ports (run_id, host_idx, idx, address, protocol, port, state, reason, reason_ttl, service)"
             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_EXTRA_SQL = ("INSERT INTO extraports (run_id, host_idx, idx, address, state, count, reasons)"
              " VALUES (?, ?, ?, ?, ?, ?, ?)")
_RUN_SQL = ("INSERT INTO runs (id, started, finished, args, scan_types, ports_scanned, stats)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)")
_LOAD_RUN_SQL = "SELECT id, started, finished, args, scan_types, ports_scanned, stats FROM runs WHERE id = ?"
_LOAD_HOSTS_SQL = ("SELECT idx, address, status, reasons, hostname, mac, distance, rtt_us, os, sequence, started,"
                   " finished, extra FROM hosts WHERE run_id = ? ORDER BY idx")
_LOAD_PORTS_SQL = ("SELECT host_idx, port, protocol, state, reason, reason_ttl, service FROM ports"
                   " WHERE run_id = ? ORDER BY host_idx, idx")
_LOAD_EXTRA_SQL = "SELECT host_idx, state, count, reasons FROM extraports WHERE run_id = ? ORDER BY host_idx, idx"
_RUNS_SQL = (
    "SELECT r.id, r.started, r.finished, r.args, r.scan_types, r.stats,"
    " (SELECT COUNT(*) FROM hosts h WHERE h.run_id = r.id AND h.status = 'up'),"
    " (SELECT COUNT(*) FROM hosts h WHERE h.run_id = r.id),"
    " (SELECT COUNT(*) FROM ports p WHERE p.run_id = r.id AND p.state = 'open')"
    " FROM runs r ORDER BY r.started DESC, r.rowid DESC"
)

#: rows per write transaction: a lock is held for milliseconds, not for a whole 50k-host import
CHUNK_ROWS = 4000
#: `PRAGMA quick_check` reads the whole file: done on files up to this size (header checks always)
QUICK_CHECK_MAX = 64 << 20
RECOVERY_MAGIC = "hostprint-recovery"
T = TypeVar("T")


def lock_wait() -> float:
    """Seconds a write waits in all for another process's lock ($HOSTPRINT_DB_TIMEOUT, default 30)."""
    try:
        v = float(os.environ.get("HOSTPRINT_DB_TIMEOUT", "30"))
    except ValueError:
        return 30.0
    return v if 0 <= v < 86400 else 30.0


def default_path() -> Path:
    """$HOSTPRINT_DB, else $XDG_DATA_HOME/hostprint (default ~/.local/share/hostprint)."""
    env = os.environ.get("HOSTPRINT_DB")
    if env:
        return Path(env).expanduser()
    return _default_dir() / "inventory.sqlite"


def _default_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "hostprint"


def named_by_user(path: str | Path | None) -> bool:
    """--db PATH or $HOSTPRINT_DB: like -oJ, its directory must exist (only the default location's
    directories are created)."""
    return bool(path) or bool(os.environ.get("HOSTPRINT_DB"))


def _read_only(path: Path) -> bool:
    """The file cannot be written: a read-only filesystem, or no write permission."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(path, os.W_OK)


def _is_locked(e: sqlite3.OperationalError) -> bool:
    msg = str(e)
    return "locked" in msg or "busy" in msg


def _dumps(obj: Any) -> str:
    try:  # fast path: plain JSON data (most rows); odd values go through the tolerant encoder
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return dumps_record(obj)


def _encode_ports_scanned(ps: dict[str, list[int]]) -> str:
    """A full 65535-port scan stored as a list costs ~400 kB per run; sorted lists fold to ranges."""
    out: dict[str, Any] = {}
    for proto, ports in ps.items():
        plist = list(ports)
        if plist == sorted(set(plist)):
            out[proto] = port_ranges(plist)
        else:
            out[proto] = plist
    return json.dumps(out)


def _decode_ports_scanned(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for proto, val in json.loads(text).items():
        if isinstance(val, list):
            out[proto] = [int(p) for p in val]
            continue
        ports: list[int] = []
        for part in filter(None, str(val).split(",")):
            lo, _, hi = part.partition("-")
            ports.extend(range(int(lo), int(hi or lo) + 1))
        out[proto] = ports
    return out


_SERVICE_ORDER = tuple(f.name for f in fields(Service))
_SERVICE_FIELDS = set(_SERVICE_ORDER)
_SERVICE_TYPED = {"tls", "ssh", "version_range"}  # typed records: stored only when set (Service.to_dict)


def _service_json(svc: Service | None) -> str | None:
    """Service.to_dict() without dataclasses.asdict's deep copy, which costs 70 us a port: a
    65,535-port host took seconds. Same keys; non-JSON values fall back to the tolerant encoder."""
    if svc is None:
        return None
    if svc.tls is not None or svc.ssh is not None or svc.version_range is not None:
        return _dumps(svc.to_dict())  # the typed TLS/SSH/version-range records: their own JSON
    return _dumps({name: getattr(svc, name) for name in _SERVICE_ORDER if name not in _SERVICE_TYPED})


def _service(text: str | None) -> Service | None:
    if text is None:
        return None
    d = json.loads(text)
    if d is None:
        return None
    # Unknown keys come from newer writers; keep what this model knows.
    return Service(**{k: v for k, v in d.items() if k in _SERVICE_FIELDS})


def _host_extra(h: HostResult) -> str | None:
    """hosts.extra (schema 3): what HostResult carries beyond the other columns, NULL when empty."""
    d = {k: v for k, v in (("hostnames", h.hostnames), ("warnings", h.warnings), ("trace", h.trace),
                           ("addresses", h.addresses)) if v}  # addresses: --dual-stack's other family
    return _dumps(d) if d else None


def add_host_rows(rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]], run_id: str,
                  i: int, h: HostResult) -> None:
    """The hosts, ports and extraports rows of host `i` of a run (either backend)."""
    rows[0].append((run_id, i, h.address, h.status, _dumps(list(h.reasons)), h.hostname, h.mac, h.distance,
                    h.rtt_us, _dumps(h.os.to_dict()), _dumps(h.sequence), h.started, h.finished, _host_extra(h)))
    rows[1].extend((run_id, i, j, h.address, p.protocol, p.port, p.state, p.reason, p.reason_ttl,
                    _service_json(p.service)) for j, p in enumerate(h.ports))
    rows[2].extend((run_id, i, j, h.address, e.state, e.count, _dumps(e.reasons)) for j, e in enumerate(h.extraports))


_UNSET: Any = object()


def run_row(run: ScanRun, finished: Any = _UNSET) -> tuple[Any, ...]:
    return (run.id, run.started, run.finished if finished is _UNSET else finished, _dumps(list(run.args)),
            _dumps(list(run.scan_types)), _encode_ports_scanned(run.ports_scanned), _dumps(run.stats))


class InventoryBase:
    """What both inventories (SQLite here, PostgreSQL in inventory_pg.py) share: reading the stored
    columns back, where damage becomes one line naming the file, and closing."""

    path: Any
    _conn: Any

    def _json(self, text: str | None, default: Any, what: str) -> Any:
        """A JSON column; a value that does not parse means a damaged file: one line naming it."""
        if text is None:
            return default
        try:
            return json.loads(text)
        except (ValueError, TypeError):
            raise UsageError(f"inventory {self.path} is damaged: {what} is not valid JSON; it was left "
                             f"untouched (hostprint writes new runs elsewhere until it is repaired or moved)") from None

    def _ports_scanned(self, text: str, run_id: str) -> dict[str, list[int]]:
        try:
            return _decode_ports_scanned(text)
        except (ValueError, TypeError, AttributeError):
            raise UsageError(f"inventory {self.path} is damaged: the scanned ports of run {run_id} do not "
                             f"read back; it was left untouched") from None

    def _service(self, text: str | None, what: str) -> Service | None:
        try:
            return _service(text)
        except (ValueError, TypeError, AttributeError):
            raise UsageError(f"inventory {self.path} is damaged: the service of {what} does not read back; "
                             f"it was left untouched") from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Inventory(InventoryBase):
    """One inventory file. `create=False` (read-only commands) never creates a missing file."""

    def __init__(self, path: str | Path | None = None, *, timeout: float | None = None, create: bool = True):
        """`timeout`: seconds a write waits in all for another process's lock (default lock_wait())."""
        self.path = Path(path).expanduser() if path else default_path()
        self.timeout = lock_wait() if timeout is None else timeout
        self._conn: sqlite3.Connection | None = None
        self.writable = create
        if not self.path.exists() and not create:
            return
        if self.path.exists() and not self.path.is_file():
            raise UsageError(f"inventory {self.path} is not a regular file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create inventory directory {self.path.parent}: {e.strerror or e}") from None
        try:
            self._open()
        except UsageError:
            # A WAL file on a read-only filesystem cannot make its -shm file: readers open it as
            # immutable (nothing can change it there anyway); writers are told it is read-only.
            if not self.path.exists() or not _read_only(self.path):
                raise
            self.close()
            if create:
                raise UsageError(f"inventory {self.path} is read-only (read-only filesystem)") from None
            self._open("?mode=ro&immutable=1")
        self._wal_done = False  # switched to WAL at the first write (a check writes nothing)

    def _open(self, query: str = "") -> None:
        from urllib.parse import quote

        with self._errors():
            self._conn = sqlite3.connect(f"file:{quote(str(self.path.absolute()))}{query}", uri=True,
                                         timeout=min(self.timeout, 2.0), isolation_level=None)
            self._conn.execute("PRAGMA foreign_keys = OFF")
            problem = self._shape()
            if problem is not None:
                self.close()
                raise UsageError(f"inventory {self.path} is damaged: {problem}; it was left untouched")
            self._ensure_schema()

    def _shape(self) -> str | None:
        """A file cut short (by a byte, say) is no whole number of pages. Asked through SQLite and
        os.stat: opening the file ourselves and closing it would drop SQLite's POSIX locks of this
        process (sqlite.org/howtocorrupt.html §2.2) and let another writer corrupt it."""
        conn = self._require()
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        try:
            size = os.stat(self.path).st_size
        except OSError as e:
            return f"cannot stat it: {e.strerror or e}"
        if page and size % page:
            return f"its size ({size} bytes) is not a whole number of {page}-byte pages (truncated?)"
        return None

    def _wal(self) -> None:
        """WAL: readers and the writer never block each other. Best effort (a locked or read-only
        file keeps its journal mode; the retries below still apply)."""
        conn = self._require()
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: consistent after a crash, fsync per checkpoint
        except sqlite3.DatabaseError:
            pass

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as e:
            msg = str(e)
            if _is_locked(e):
                raise UsageError(f"inventory {self.path} is locked by another process ({msg})") from None
            if "readonly" in msg or "read-only" in msg:
                raise UsageError(f"inventory {self.path} is read-only ({msg})") from None
            raise UsageError(f"inventory {self.path}: {msg}") from None
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            raise UsageError(f"inventory {self.path} is unreadable ({e}); it was left untouched") from None

    def _write(self, body: Callable[[sqlite3.Connection], T], *, wal: bool = True) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction; while another process holds the write lock,
        retry with growing, jittered pauses for up to `self.timeout` seconds in all. The first
        write switches the file to WAL (wal=False: a check that must leave the file as it is)."""
        conn = self._require()
        if wal and not getattr(self, "_wal_done", True):
            self._wal_done = True
            self._wal()
        deadline = time.monotonic() + self.timeout
        pause = 0.02
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = body(conn)
                    conn.execute("COMMIT")
                    return out
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                if _is_locked(e) and time.monotonic() + pause <= deadline:
                    time.sleep(pause * (0.5 + random.random()))
                    pause = min(pause * 2, 1.0)
                    continue
                with self._errors():
                    raise
            except sqlite3.DatabaseError:
                with self._errors():
                    raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._require()
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UsageError(f"no runs recorded: inventory {self.path} does not exist")
        return self._conn

    def check_health(self, *, thorough: bool = True) -> None:
        """UsageError when the file is damaged: header shape, and `PRAGMA quick_check` on files up to
        QUICK_CHECK_MAX bytes (thorough)."""
        problem = self._shape() if self._conn is not None else None
        if problem is None and thorough and self._conn is not None and self.path.stat().st_size <= QUICK_CHECK_MAX:
            with self._errors():
                rows = self._conn.execute("PRAGMA quick_check(3)").fetchall()
            if rows != [("ok",)]:
                problem = "; ".join(str(r[0]) for r in rows)[:200]
        if problem is not None:
            raise UsageError(f"inventory {self.path} is damaged: {problem}; it was left untouched")
        if thorough and self._conn is not None:  # the runs table is small: every JSON column of it
            with self._errors():
                rows = self._conn.execute("SELECT id, args, scan_types, stats FROM runs").fetchall()
            for rid, *cols in rows:
                for name, text in zip(("args", "scan types", "stats"), cols):
                    self._json(text, None, f"the {name} of run {rid}")

    def check_writable(self) -> None:
        """The write lock can be taken (waiting as a write would); nothing is written."""
        self._write(lambda c: None, wal=False)

    def _ensure_schema(self) -> None:
        conn = self._require()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            def create(c: sqlite3.Connection) -> None:
                # Re-check inside the write lock: another process may have created it meanwhile.
                if not c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        c.execute(stmt)
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

            self._write(create)
            return
        if "schema_version" not in tables:
            raise UsageError(f"{self.path} is an SQLite database but not a hostprint inventory; it was left untouched")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise UsageError(
                f"inventory {self.path} has schema version {version}, this hostprint reads up to {SCHEMA_VERSION}"
            )
        missing = {"runs", "hosts", "ports", "extraports", "observations"} - tables
        if missing:
            raise UsageError(f"inventory {self.path} is damaged: table(s) {', '.join(sorted(missing))} missing; "
                             f"it was left untouched")
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Bring a file of an older schema to SCHEMA_VERSION, one step per transaction (MIGRATIONS)."""
        for target, step in MIGRATIONS:
            if version < target:
                def apply(c: sqlite3.Connection, target: int = target, step: Any = step) -> None:
                    row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
                    if row and isinstance(row[0], int) and row[0] >= target:  # another process did it meanwhile
                        return
                    step(c)
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))

                with self._errors():
                    self._write(apply)

    # -- writing --------------------------------------------------------------------------------

    def record_run(self, run: ScanRun, hosts: Iterable[HostResult] | None = None) -> None:
        """Store the run; recording the same run id again replaces it (observations are kept: they
        are added separately and belong to the run, not the record). Short transactions: an earlier
        recording of this id goes first, then hosts with their ports in chunks, the `runs` row last
        (module docstring). `hosts`: the hosts as a one-pass iterable instead of run.hosts (a
        passive run streams them from disk)."""
        self.check_health(thorough=True)

        def forget(c: sqlite3.Connection) -> None:
            for table in _RUN_TABLES:
                col = "id" if table == "runs" else "run_id"
                c.execute(f"DELETE FROM {table} WHERE {col} = ?", (run.id,))

        self._write(forget)
        rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]] = ([], [], [])

        def flush() -> None:
            hs, ps, es = rows
            if not (hs or ps or es):
                return

            def insert(c: sqlite3.Connection) -> None:
                c.executemany(_HOST_SQL, hs)
                c.executemany(_PORT_SQL, ps)
                c.executemany(_EXTRA_SQL, es)

            self._write(insert)
            for r in rows:
                r.clear()

        for i, h in enumerate(run.hosts if hosts is None else hosts):
            add_host_rows(rows, run.id, i, h)
            if sum(map(len, rows)) >= CHUNK_ROWS:
                flush()
        flush()
        self._write(lambda c: c.execute(_RUN_SQL, run_row(run)))

    # -- a run written as it goes (hostprint cluster): its `runs` row first, finished NULL ---------

    def begin_run(self, run: ScanRun) -> None:
        """Start a run whose hosts arrive one by one: an earlier recording of the id goes, the
        `runs` row is written now with finished NULL (`history` shows it "unfinished", with the hosts
        so far; `--resume RUN` continues it if the run never finishes)."""
        self.check_health(thorough=False)

        def begin(c: sqlite3.Connection) -> None:
            for table in _RUN_TABLES:
                c.execute(f"DELETE FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} = ?", (run.id,))
            c.execute(_RUN_SQL, run_row(run, finished=None))

        self._write(begin)

    def add_hosts(self, run_id: str, hosts: Iterable[tuple[int, HostResult]]) -> None:
        """Hosts of a begun run at their positions (one transaction; a host already at that
        position is replaced, so a host arriving twice is stored once)."""
        rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]] = ([], [], [])
        idxs = []
        for i, h in hosts:
            add_host_rows(rows, run_id, i, h)
            idxs.append((run_id, i))

        def add(c: sqlite3.Connection) -> None:
            for table, col in (("hosts", "idx"), ("ports", "host_idx"), ("extraports", "host_idx")):
                c.executemany(f"DELETE FROM {table} WHERE run_id = ? AND {col} = ?", idxs)
            c.executemany(_HOST_SQL, rows[0])
            c.executemany(_PORT_SQL, rows[1])
            c.executemany(_EXTRA_SQL, rows[2])

        self._write(add)

    def finish_run(self, run: ScanRun) -> None:
        """The begun run's end: its `runs` row gets `finished` and the final stats."""
        self._write(lambda c: c.execute("UPDATE runs SET finished = ?, stats = ?, ports_scanned = ? WHERE id = ?",
                                        (run.finished, _dumps(run.stats), _encode_ports_scanned(run.ports_scanned),
                                         run.id)))

    def _insert_chunked(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        it = iter(rows)
        while True:
            chunk = [r for _, r in zip(range(CHUNK_ROWS), it)]
            if not chunk:
                return
            self._write(lambda c, chunk=chunk: c.executemany(sql, chunk))  # type: ignore[misc]

    def add_observation(self, run_id: str, address: str, kind: str, data: Any) -> None:
        """Raw evidence (a packet summary, a banner, a timing series) kept beside the run."""
        self.add_observations(run_id, [(address, kind, data)])

    def add_observations(self, run_id: str, items: Iterable[tuple[str, str, Any]]) -> None:
        """Many observations, in short transactions."""
        now = time.time()
        self._insert_chunked(
            "INSERT INTO observations (run_id, address, kind, data, ts) VALUES (?, ?, ?, ?, ?)",
            ((run_id, address, kind, _dumps(data), now) for address, kind, data in items))

    def import_file(self, path: str | Path) -> list[str]:
        """Record every run of a recovery file (or of hostprint -oJ output); returns their ids."""
        ids = []
        for run, observations in read_recovery(path):
            self.record_run(run)
            if observations:
                self._write(lambda c, rid=run.id: c.execute(  # type: ignore[misc]
                    "DELETE FROM observations WHERE run_id = ?", (rid,)))
                self.add_observations(run.id, observations)
            ids.append(run.id)
        return ids

    # -- reading --------------------------------------------------------------------------------

    def observations(self, run_id: str, address: str | None = None, kind: str | None = None) -> list[dict]:
        if self._conn is None:
            return []
        sql = "SELECT address, kind, data, ts FROM observations WHERE run_id = ?"
        params: list[Any] = [run_id]
        if address is not None:
            sql += " AND address = ?"
            params.append(address)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        with self._errors():
            rows = self._conn.execute(sql + " ORDER BY id", params).fetchall()
        return [{"address": a, "kind": k, "data": self._json(d, None, f"an observation of run {run_id}"), "ts": ts}
                for a, k, d, ts in rows]

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first: id, started, finished, args, scan_types, hosts_up, hosts_total, open_ports."""
        if self._conn is None:
            return []
        sql, params = _RUNS_SQL, cast(tuple[Any, ...], ())
        if limit is not None:
            sql, params = sql + " LIMIT ?", (int(limit),)
        with self._errors():
            rows = self._conn.execute(sql, params).fetchall()
        return runs_from_rows(self, rows)

    def resolve_run(self, spec: str) -> str:
        """A run id from a unique id prefix, 'last' / '-1' (newest), or '-N' (N-th newest)."""
        spec = str(spec).strip()
        if not spec:
            raise UsageError("empty run id")
        conn = self._require()
        with self._errors():
            if spec == "last" or (spec.startswith("-") and spec[1:].isdigit()):
                n = 1 if spec == "last" else int(spec[1:])
                if n < 1:
                    raise UsageError(f"bad run id {spec}: use -1 for the newest run")
                row = conn.execute(
                    "SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1 OFFSET ?", (n - 1,)
                ).fetchone()
                if row is None:
                    raise UsageError(f"no run {spec} in inventory {self.path}")
                return row[0]
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY started DESC LIMIT 6", (len(spec), spec)
                )
            ]
        if not ids:
            raise UsageError(f"no run {spec} in inventory {self.path}")
        if len(ids) > 1:
            raise UsageError(f"run id {spec} is ambiguous: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}")
        return ids[0]

    def load_run(self, spec: str) -> ScanRun:
        run_id = self.resolve_run(spec)
        conn = self._require()
        with self._errors():
            r = conn.execute(_LOAD_RUN_SQL, (run_id,)).fetchone()
            host_rows = conn.execute(_LOAD_HOSTS_SQL, (run_id,)).fetchall()
            port_rows = conn.execute(_LOAD_PORTS_SQL, (run_id,)).fetchall()
            extra_rows = conn.execute(_LOAD_EXTRA_SQL, (run_id,)).fetchall()
        return assemble_run(self, r, host_rows, port_rows, extra_rows)


def runs_from_rows(inv: Any, rows: Any) -> list[dict[str, Any]]:
    out = []
    for rid, started, finished, args, scan_types, stats, up, total, open_ports in rows:
        stats_d = inv._json(stats, {}, f"the stats of run {rid}")
        stated = stats_d.get("hosts_total") if isinstance(stats_d, dict) else None
        if isinstance(stated, int) and stated > total:
            total = stated
        out.append({"id": rid, "started": started, "finished": finished,
                    "args": inv._json(args, [], f"the args of run {rid}"),
                    "scan_types": inv._json(scan_types, [], f"the scan types of run {rid}"),
                    "hosts_up": up, "hosts_total": total, "open_ports": open_ports,
                    "interrupted": isinstance(stats_d, dict) and isinstance(stats_d.get("interrupted"), dict)})
    return out


def assemble_run(inv: Any, r: Any, host_rows: Any, port_rows: Any, extra_rows: Any) -> ScanRun:
    """A ScanRun from its rows (either backend). `inv` reads JSON columns (`_json`, `_service`,
    `_ports_scanned`): a value that does not parse is reported as damage, naming the run."""
    run_id = r[0]
    run = ScanRun(
        args=inv._json(r[3], [], f"the args of run {run_id}"),
        id=r[0],
        started=r[1],
        finished=r[2],
        scan_types=inv._json(r[4], [], f"the scan types of run {run_id}"),
        ports_scanned=inv._ports_scanned(r[5], run_id),
        stats=inv._json(r[6], {}, f"the stats of run {run_id}"),
    )
    hosts: dict[int, HostResult] = {}
    for idx, addr, status, reasons, hostname, mac, distance, rtt, os_, seq, hs, hf, extra in host_rows:
        hosts[idx] = HostResult(
            address=addr,
            status=status,
            reasons=inv._json(reasons, [], f"host {addr} of run {run_id}"),
            hostname=hostname,
            mac=mac,
            distance=distance,
            rtt_us=rtt,
            os=OsEvidence.from_dict(inv._json(os_, {}, f"the os of host {addr} in run {run_id}")),
            sequence=inv._json(seq, {}, f"the sequence of host {addr} in run {run_id}"),
            started=hs,
            finished=hf,
        )
        more = inv._json(extra, None, f"the names of host {addr} in run {run_id}")
        if isinstance(more, dict):
            hosts[idx].hostnames = [h for h in more.get("hostnames") or [] if isinstance(h, dict)]
            hosts[idx].warnings = [w for w in more.get("warnings") or [] if isinstance(w, str)]
            hosts[idx].trace = [t for t in more.get("trace") or [] if isinstance(t, dict)]
            hosts[idx].addresses = [a for a in more.get("addresses") or [] if isinstance(a, dict)]
    for hidx, port, proto, state, reason, ttl, svc in port_rows:
        if hidx in hosts:
            hosts[hidx].ports.append(PortResult(port, proto, state, reason, ttl,
                                                inv._service(svc, f"port {port} in run {run_id}")))
    for hidx, state, count, reasons in extra_rows:
        if hidx in hosts:
            hosts[hidx].extraports.append(ExtraPorts(state, count,
                                                     inv._json(reasons, {}, f"extraports in run {run_id}")))
    run.hosts = [hosts[i] for i in sorted(hosts)]
    return run


# -- migrations: the same steps for SQLite and PostgreSQL (`c.execute(sql, params)` with ? placeholders) --


def _m2_os_rows(c: Any) -> None:
    """1 -> 2: every stored `os` object is read through OsEvidence.from_dict (the one reader of every
    older shape), given the combined verdict it lacked (timing and passive runs had none) and
    written back."""
    from hostprint.match import verdict

    for run_id, idx, text in c.execute("SELECT run_id, idx, os FROM hosts").fetchall():
        try:
            ev = OsEvidence.from_dict(json.loads(text) if text else {})
        except ValueError:
            ev = OsEvidence()
        if not ev.matches and ev.unknown is None:
            verdict.apply(ev)
        c.execute("UPDATE hosts SET os = ? WHERE run_id = ? AND idx = ?", (_dumps(ev.to_dict()), run_id, idx))


def _m3_host_extra(c: Any) -> None:
    """2 -> 3: hosts.extra (names with their types, warnings, traceroute hops)."""
    c.execute("ALTER TABLE hosts ADD COLUMN extra TEXT")


#: (the version a step brings a store to, the step), in order
MIGRATIONS: list[tuple[int, Callable[[Any], None]]] = [(2, _m2_os_rows), (3, _m3_host_extra)]


# -- before the first packet ------------------------------------------------------------------------


def check_inventory(path: str | Path | None = None) -> Path:
    """Can this run be recorded? Checked before the first packet, writing nothing: a named path's
    directory exists (as for -oJ; only the default location's directories are created), the file
    is not a directory, not damaged, has our schema (or is new) and its write lock can be taken; a
    new file's directory takes a file. UsageError (one line) otherwise; returns the path."""
    p = Path(path).expanduser() if path else default_path()
    hint = " (choose another with --db PATH, or --no-db)"
    if p.is_dir():
        raise UsageError(f"inventory {p} is a directory{hint}")
    if not p.exists():
        parent = p.parent
        if not parent.is_dir():
            if named_by_user(path) or parent.exists():
                raise UsageError(f"cannot use inventory {p}: directory {parent} does not exist{hint}")
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create inventory directory {parent}: {e.strerror or e}{hint}") from None
        try:
            fd, probe = tempfile.mkstemp(prefix=".hostprint-check-", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise UsageError(f"cannot create inventory {p}: {e.strerror or e}{hint}") from None
        return p
    with Inventory(p) as inv:
        inv.check_health(thorough=True)
        inv.check_writable()
    return p


# -- recovery files ----------------------------------------------------------------------------------


def recovery_dirs() -> list[Path]:
    """Where a run that could not reach the inventory is saved, in order of preference:
    $XDG_STATE_HOME/hostprint/recovery (default ~/.local/state/...), then a per-user directory
    in the temporary directory."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return [Path(base).expanduser() / "hostprint" / "recovery",
            Path(tempfile.gettempdir()) / f"hostprint-recovery-{os.getuid()}"]


def save_recovery(run: ScanRun, observations: Iterable[tuple[str, str, Any]] = (),
                  hosts: Callable[[], Iterable[HostResult]] | None = None) -> Path:
    """The run as JSON lines (a header, one line per host, one per observation) in the first
    recovery directory that takes it; `hostprint history --import FILE` records it. OSError when
    no directory takes it. `hosts`: a factory of the hosts (a fresh pass each call) instead of
    run.hosts."""
    obs = list(observations)
    last: OSError | None = None
    for d in recovery_dirs():
        path = d / f"run-{run.id}.jsonl"
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as fp:
                fp.write(_dumps({"type": RECOVERY_MAGIC, "version": SCHEMA_VERSION, "run": {
                    "id": run.id, "started": run.started, "finished": run.finished, "args": list(run.args),
                    "scan_types": list(run.scan_types), "ports_scanned": json.loads(_encode_ports_scanned(
                        run.ports_scanned)), "stats": run.stats}}) + "\n")
                for h in (run.hosts if hosts is None else hosts()):
                    d_ = h.to_dict()
                    d_["started"], d_["finished"] = h.started, h.finished
                    fp.write(_dumps({"type": "host", **d_}) + "\n")
                for address, kind, data in obs:
                    fp.write(_dumps({"type": "observation", "address": address, "kind": kind, "data": data}) + "\n")
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, path)
            return path
        except OSError as e:
            last = e
            try:
                tmp.unlink()
            except (OSError, UnboundLocalError):
                pass
    raise last or OSError("no recovery directory")


def host_from_dict(d: dict[str, Any]) -> HostResult:
    """A host from its JSON record (HostResult.to_dict() plus started/finished)."""
    return _host_from_dict(d)


def _host_from_dict(d: dict[str, Any]) -> HostResult:
    svc = _SERVICE_FIELDS
    ports = []
    for p in d.get("ports") or []:
        s = p.get("service")
        ports.append(PortResult(int(p["port"]), str(p["protocol"]), str(p["state"]), str(p.get("reason") or ""),
                                p.get("reason_ttl"),
                                Service(**{k: v for k, v in s.items() if k in svc}) if isinstance(s, dict) else None))
    extra = [ExtraPorts(str(e["state"]), int(e["count"]), dict(e.get("reasons") or {}), e.get("protocol"))
             for e in d.get("extraports") or []]
    return HostResult(address=str(d["address"]), status=str(d.get("status") or "unknown"),
                      reasons=list(d.get("reasons") or []), hostname=d.get("hostname"), mac=d.get("mac"),
                      distance=d.get("distance"), rtt_us=d.get("rtt_us"), ports=ports, extraports=extra,
                      os=OsEvidence.from_dict(d.get("os") or {}), sequence=dict(d.get("sequence") or {}),
                      addresses=[a for a in d.get("addresses") or [] if isinstance(a, dict)],
                      started=d.get("started"), finished=d.get("finished"))


def read_recovery(path: str | Path) -> list[tuple[ScanRun, list[tuple[str, str, Any]]]]:
    """Runs from a recovery file, or from hostprint -oJ output (host records grouped by their
    `scan` block; passive observation lines are skipped). UsageError naming file:line otherwise."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {name}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{name}: not UTF-8 text (byte offset {e.start}); expected a hostprint recovery "
                         f"file or -oJ output") from None
    runs: dict[str, tuple[ScanRun, list[tuple[str, str, Any]]]] = {}
    current: ScanRun | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            kind = rec.get("type", "host")
            if kind == RECOVERY_MAGIC:
                r = rec["run"]
                current = ScanRun(args=list(r["args"]), id=str(r["id"]), started=float(r["started"]),
                                  finished=r.get("finished"), scan_types=list(r.get("scan_types") or []),
                                  ports_scanned=_decode_ports_scanned(json.dumps(r.get("ports_scanned") or {})),
                                  stats=dict(r.get("stats") or {}))
                runs[current.id] = (current, [])
            elif kind == "observation" and current is not None and "kind" in rec:
                runs[current.id][1].append((str(rec["address"]), str(rec["kind"]), rec.get("data")))
            elif kind == "observation":
                continue  # passive -oJ per-packet lines
            elif kind == "host":
                scan = rec.get("scan")
                if isinstance(scan, dict) and (current is None or scan.get("id") != current.id):
                    rid = str(scan["id"])
                    if rid not in runs:
                        runs[rid] = (ScanRun(args=list(scan.get("args") or []), id=rid,
                                             started=float(scan.get("started") or 0.0),
                                             finished=scan.get("finished")), [])
                    target = runs[rid][0]
                elif current is not None:
                    target = current
                else:
                    raise ValueError("a host record without a run (no recovery header, no scan block)")
                target.hosts.append(_host_from_dict(rec))
            else:
                raise ValueError(f"unknown record type {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UsageError(f"{where}: not a hostprint recovery or -oJ record ({e})") from None
    if not runs:
        raise UsageError(f"{name}: no hostprint run in it (expected a recovery file or -oJ output)")
    return list(runs.values())
