"""The SQLite inventory: every run hostprint made, so results can be listed, reloaded, compared and
re-rendered later in any output format without scanning again.

Safety rules this module keeps: an existing file is never deleted or recreated (a corrupt, foreign
or locked database is reported as a UsageError naming its path and left alone), a run is written
in one transaction (a crash leaves the old state, never half a run), and recording the same run
twice replaces it instead of duplicating it. `schema_version` lets later releases migrate.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from hostprint.errors import UsageError
from hostprint.model import ExtraPorts, HostResult, OsEvidence, PortResult, ScanRun, Service
from hostprint.report.jsonl import dumps_record
from hostprint.report.nmapstyle import port_ranges

SCHEMA_VERSION = 2
# 2: `hosts.os` holds model.OsEvidence.to_dict() with the combined verdict of every technique
#    (version 1 rows: loose per-technique dicts; passive rows had `os.passive.os` and no verdict).

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


def default_path() -> Path:
    """$HOSTPRINT_DB, else $XDG_DATA_HOME/hostprint (default ~/.local/share/hostprint)."""
    env = os.environ.get("HOSTPRINT_DB")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "hostprint" / "inventory.sqlite"


def _dumps(obj: Any) -> str:
    try:  # fast path: plain JSON data (most rows); odd values go through the tolerant encoder
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return dumps_record(obj)


def _loads(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    return json.loads(text)


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


def _service_json(svc: Service | None) -> str | None:
    """Service.to_dict() without dataclasses.asdict's deep copy, which costs 70 us a port: a
    65,535-port host took seconds. Same keys; non-JSON values fall back to the tolerant encoder."""
    if svc is None:
        return None
    return _dumps({name: getattr(svc, name) for name in _SERVICE_ORDER})


def _service(text: str | None) -> Service | None:
    if text is None:
        return None
    d = json.loads(text)
    if d is None:
        return None
    # Unknown keys come from newer writers; keep what this model knows.
    return Service(**{k: v for k, v in d.items() if k in _SERVICE_FIELDS})


class Inventory:
    """One inventory file. `create=False` (read-only commands) never creates a missing file."""

    def __init__(self, path: str | Path | None = None, *, timeout: float = 5.0, create: bool = True):
        self.path = Path(path).expanduser() if path else default_path()
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        if not self.path.exists() and not create:
            return
        if self.path.exists() and not self.path.is_file():
            raise UsageError(f"inventory {self.path} is not a regular file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create inventory directory {self.path.parent}: {e.strerror or e}") from None
        with self._errors():
            self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self._conn.execute("PRAGMA foreign_keys = OFF")
            self._ensure_schema()

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as e:
            msg = str(e)
            if "locked" in msg or "busy" in msg:
                raise UsageError(f"inventory {self.path} is locked by another process ({msg})") from None
            raise UsageError(f"inventory {self.path}: {msg}") from None
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            raise UsageError(f"inventory {self.path} is unreadable ({e}); it was left untouched") from None

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

    def _ensure_schema(self) -> None:
        conn = self._require()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            with self._transaction() as c:
                # Re-check inside the write lock: another process may have created it meanwhile.
                if not c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        c.execute(stmt)
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            return
        if "schema_version" not in tables:
            raise UsageError(f"{self.path} is an SQLite database but not a hostprint inventory; it was left untouched")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise UsageError(
                f"inventory {self.path} has schema version {version}, this hostprint reads up to {SCHEMA_VERSION}"
            )
        if version < 2:
            self._upgrade_os_rows()

    def _upgrade_os_rows(self) -> None:
        """Version 1 -> 2, once: every stored `os` object is read through OsEvidence.from_dict
        (the one reader of every older shape), given the combined verdict it lacked (timing and
        passive runs had none) and written back."""
        from hostprint.match import verdict
        from hostprint.model import OsEvidence

        with self._transaction() as c:
            row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row and isinstance(row[0], int) and row[0] >= 2:  # another process upgraded it meanwhile
                return
            rows = c.execute("SELECT run_id, idx, os FROM hosts").fetchall()
            for run_id, idx, text in rows:
                try:
                    ev = OsEvidence.from_dict(json.loads(text) if text else {})
                except ValueError:
                    ev = OsEvidence()
                if not ev.matches and ev.unknown is None:
                    verdict.apply(ev)
                c.execute("UPDATE hosts SET os = ? WHERE run_id = ? AND idx = ?", (_dumps(ev.to_dict()), run_id, idx))
            c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def record_run(self, run: ScanRun) -> None:
        """Store the whole run in one transaction; recording the same run id again replaces it
        (observations are kept: they are added separately and belong to the run, not the record)."""
        with self._transaction() as c:
            for table in _RUN_TABLES:
                col = "id" if table == "runs" else "run_id"
                c.execute(f"DELETE FROM {table} WHERE {col} = ?", (run.id,))
            c.execute(
                "INSERT INTO runs (id, started, finished, args, scan_types, ports_scanned, stats)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.started,
                    run.finished,
                    _dumps(list(run.args)),
                    _dumps(list(run.scan_types)),
                    _encode_ports_scanned(run.ports_scanned),
                    _dumps(run.stats),
                ),
            )
            c.executemany(
                "INSERT INTO hosts (run_id, idx, address, status, reasons, hostname, mac, distance, rtt_us,"
                " os, sequence, started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run.id, i, h.address, h.status, _dumps(list(h.reasons)), h.hostname, h.mac,
                        h.distance, h.rtt_us, _dumps(h.os.to_dict()), _dumps(h.sequence), h.started, h.finished,
                    )
                    for i, h in enumerate(run.hosts)
                ],
            )
            c.executemany(
                "INSERT INTO ports (run_id, host_idx, idx, address, protocol, port, state, reason, reason_ttl,"
                " service) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run.id, i, j, h.address, p.protocol, p.port, p.state, p.reason, p.reason_ttl,
                        _service_json(p.service),
                    )
                    for i, h in enumerate(run.hosts)
                    for j, p in enumerate(h.ports)
                ],
            )
            # --dual-stack: a host's other addresses ride in the observations table (kind "addresses"),
            # so the schema stays at its version; replaced with the run like the rows above
            c.execute("DELETE FROM observations WHERE run_id = ? AND kind = 'addresses'", (run.id,))
            c.executemany(
                "INSERT INTO observations (run_id, address, kind, data, ts) VALUES (?, ?, 'addresses', ?, ?)",
                [(run.id, h.address, _dumps(h.addresses), time.time()) for h in run.hosts if h.addresses],
            )
            c.executemany(
                "INSERT INTO extraports (run_id, host_idx, idx, address, state, count, reasons)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run.id, i, j, h.address, e.state, e.count, _dumps(e.reasons))
                    for i, h in enumerate(run.hosts)
                    for j, e in enumerate(h.extraports)
                ],
            )

    def add_observation(self, run_id: str, address: str, kind: str, data: Any) -> None:
        """Raw evidence (a packet summary, a banner, a timing series) kept beside the run."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO observations (run_id, address, kind, data, ts) VALUES (?, ?, ?, ?, ?)",
                (run_id, address, kind, _dumps(data), time.time()),
            )

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
        return [{"address": a, "kind": k, "data": json.loads(d), "ts": ts} for a, k, d, ts in rows]

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first: id, started, finished, args, scan_types, hosts_up, hosts_total, open_ports."""
        if self._conn is None:
            return []
        sql = (
            "SELECT r.id, r.started, r.finished, r.args, r.scan_types, r.stats,"
            " (SELECT COUNT(*) FROM hosts h WHERE h.run_id = r.id AND h.status = 'up'),"
            " (SELECT COUNT(*) FROM hosts h WHERE h.run_id = r.id),"
            " (SELECT COUNT(*) FROM ports p WHERE p.run_id = r.id AND p.state = 'open')"
            " FROM runs r ORDER BY r.started DESC, r.rowid DESC"
        )
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        with self._errors():
            rows = self._conn.execute(sql, params).fetchall()
        out = []
        for rid, started, finished, args, scan_types, stats, up, total, open_ports in rows:
            stats_d = _loads(stats, {})
            stated = stats_d.get("hosts_total") if isinstance(stats_d, dict) else None
            if isinstance(stated, int) and stated > total:
                total = stated
            out.append(
                {
                    "id": rid,
                    "started": started,
                    "finished": finished,
                    "args": _loads(args, []),
                    "scan_types": _loads(scan_types, []),
                    "hosts_up": up,
                    "hosts_total": total,
                    "open_ports": open_ports,
                }
            )
        return out

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
            r = conn.execute(
                "SELECT id, started, finished, args, scan_types, ports_scanned, stats FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            host_rows = conn.execute(
                "SELECT idx, address, status, reasons, hostname, mac, distance, rtt_us, os, sequence, started,"
                " finished FROM hosts WHERE run_id = ? ORDER BY idx",
                (run_id,),
            ).fetchall()
            port_rows = conn.execute(
                "SELECT host_idx, port, protocol, state, reason, reason_ttl, service FROM ports"
                " WHERE run_id = ? ORDER BY host_idx, idx",
                (run_id,),
            ).fetchall()
            extra_rows = conn.execute(
                "SELECT host_idx, state, count, reasons FROM extraports WHERE run_id = ? ORDER BY host_idx, idx",
                (run_id,),
            ).fetchall()
        run = ScanRun(
            args=_loads(r[3], []),
            id=r[0],
            started=r[1],
            finished=r[2],
            scan_types=_loads(r[4], []),
            ports_scanned=_decode_ports_scanned(r[5]),
            stats=_loads(r[6], {}),
        )
        hosts: dict[int, HostResult] = {}
        for idx, addr, status, reasons, hostname, mac, distance, rtt, os_, seq, hs, hf in host_rows:
            hosts[idx] = HostResult(
                address=addr,
                status=status,
                reasons=_loads(reasons, []),
                hostname=hostname,
                mac=mac,
                distance=distance,
                rtt_us=rtt,
                os=OsEvidence.from_dict(_loads(os_, {})),
                sequence=_loads(seq, {}),
                started=hs,
                finished=hf,
            )
        for hidx, port, proto, state, reason, ttl, svc in port_rows:
            if hidx in hosts:
                hosts[hidx].ports.append(PortResult(port, proto, state, reason, ttl, _service(svc)))
        for hidx, state, count, reasons in extra_rows:
            if hidx in hosts:
                hosts[hidx].extraports.append(ExtraPorts(state, count, _loads(reasons, {})))
        run.hosts = [hosts[i] for i in sorted(hosts)]
        by_addr = {h.address: h for h in run.hosts}
        for o in self.observations(run_id, kind="addresses"):
            h = by_addr.get(o["address"])
            if h is not None and isinstance(o["data"], list):
                h.addresses = [a for a in o["data"] if isinstance(a, dict)]
        return run
