"""The PostgreSQL inventory against a real server (tests/pgserver.py: Debian's PostgreSQL in its own
temporary data directory, a unix socket only): the same runs read back as from SQLite, the same
run selection, migrations on both, history/report/diff/merge reading it, a run written host by
host with a host arriving twice stored once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT
from hostprint.model import ExtraPorts, HostResult, PortResult, ScanRun, Service
from hostprint.report.inventory import Inventory
from hostprint.report.inventory_pg import PgInventory, ddl
from hostprint.report.store import open_inventory


@pytest.fixture(scope="module")
def pg():
    if os.geteuid() != 0:
        pytest.skip("starts PostgreSQL as the postgres user (needs root)")
    from pgserver import PgServer, pg_bin

    if pg_bin() is None:
        pytest.skip("needs Debian's postgresql package (scripts/setup.sh)")
    with PgServer() as server:
        yield server


_n = 0


def fresh(pg) -> str:
    global _n
    _n += 1
    return pg.createdb(f"t{os.getpid()}_{_n}")


def a_run(i: int, ports: list[int]) -> ScanRun:
    run = ScanRun(args=["hostprint", "scan", "-sS", f"198.18.0.{i}"], scan_types=["syn"],
                  ports_scanned={"tcp": ports}, stats={"probes": 10 * i})
    run.started = 1000.0 + i
    run.finished = 1001.5 + i
    h = HostResult(f"198.18.0.{i}", "up", ["syn-ack"], mac="02:00:00:00:00:01", distance=1, rtt_us=120.5)
    h.add_hostname(f"h{i}.lab", "user")
    h.warnings.append("a warning")
    h.ports = [PortResult(p, "tcp", "open", "syn-ack", 64, Service(name="http", product="nginx")) for p in ports[:2]]
    h.extraports = [ExtraPorts("closed", len(ports) - 2, {"reset": len(ports) - 2}, "tcp")]
    run.hosts = [h, HostResult(f"198.18.1.{i}", "down")]
    return run


def test_runs_read_back_as_from_sqlite(pg, tmp_path):
    url = fresh(pg)
    runs = [a_run(i, [22, 80, 443, 8080]) for i in (1, 2, 3)]
    with open_inventory(url) as p, open_inventory(str(tmp_path / "inv.sqlite")) as s:
        assert isinstance(p, PgInventory) and isinstance(s, Inventory)
        for r in runs:
            p.record_run(r)
            s.record_run(r)
        for spec in ("last", "-2", runs[0].id[:6], runs[2].id):
            a, b = p.load_run(spec), s.load_run(spec)
            assert a.id == b.id
            assert [h.to_dict() for h in a.hosts] == [h.to_dict() for h in b.hosts]
            assert (a.args, a.scan_types, a.ports_scanned, a.stats, a.started, a.finished) == \
                   (b.args, b.scan_types, b.ports_scanned, b.stats, b.started, b.finished)
        assert p.runs() == s.runs()
        assert p.load_run("last").hosts[0].hostnames == [{"name": "h3.lab", "type": "user"}]


def test_a_run_written_host_by_host_stores_each_host_once(pg):
    url = fresh(pg)
    run = a_run(5, [22, 80, 443])
    with open_inventory(url) as p:
        p.begin_run(run)
        assert p.runs()[0]["finished"] is None  # history says "unfinished"
        p.add_hosts(run.id, [(0, run.hosts[0])])
        p.add_hosts(run.id, [(1, run.hosts[1]), (0, run.hosts[0])])  # a re-run shard sends host 0 again
        p.finish_run(run)
        back = p.load_run(run.id)
    assert [h.address for h in back.hosts] == [h.address for h in run.hosts]
    assert back.finished == run.finished and len(back.hosts[0].ports) == 2


def test_schema_2_is_migrated_on_both(pg, tmp_path):
    import psycopg

    url = fresh(pg)
    with psycopg.connect(url, autocommit=True) as c:
        for stmt in ddl():
            c.execute(stmt.replace(",\n    extra TEXT", "").replace("extra TEXT,", ""))
        c.execute("INSERT INTO schema_version (version) VALUES (2)")
        cols = {r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'hosts'").fetchall()}
        assert "extra" not in cols
    with open_inventory(url) as p:
        p.record_run(a_run(7, [22, 80]))
        assert p.load_run("last").hosts[0].warnings == ["a warning"]
    with psycopg.connect(url) as c:
        assert c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 3
    # SQLite: a version-2 file (made by this schema without the column) gets it too
    path = tmp_path / "v2.sqlite"
    with Inventory(path) as s:
        s.record_run(a_run(8, [22, 80]))
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE hosts DROP COLUMN extra")
    con.execute("DELETE FROM schema_version")
    con.execute("INSERT INTO schema_version (version) VALUES (2)")
    con.commit()
    con.close()
    with Inventory(path) as s:
        s.record_run(a_run(9, [22, 80]))
        assert s.load_run("last").hosts[0].warnings == ["a warning"]
        assert s.load_run("-2").hosts[0].warnings == []  # written by version 2: nothing to restore
    con = sqlite3.connect(path)
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 3


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostprint", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_history_report_diff_merge_read_postgresql(pg, tmp_path):
    url = fresh(pg)
    sq = str(tmp_path / "same.sqlite")
    a, b = a_run(1, [22, 80, 443]), a_run(1, [22, 8080, 443])
    b.hosts = b.hosts[1:]  # 198.18.0.1 (up) went away
    b.started += 10  # (equal start times: SQLite orders by insertion, PostgreSQL by id)
    for r in (a, b):
        f = tmp_path / f"{r.id}.jsonl"
        f.write_text("".join(json.dumps(r.host_record(h)) + "\n" for h in r.hosts))
        for db in (url, sq):
            res = cli("history", "--import", str(f), "--db", db)
            assert res.returncode == 0, res.stderr
    res = cli("history", "--json", "--db", url)
    assert res.returncode == 0, res.stderr
    assert [json.loads(ln)["id"] for ln in res.stdout.splitlines()] == [b.id, a.id]
    res = cli("history", b.id, "--json", "--db", url)
    assert [json.loads(ln)["address"] for ln in res.stdout.splitlines()] == ["198.18.1.1"]
    res = cli("diff", a.id, b.id, "--json", "--db", url)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["hosts_went_away"] and d == json.loads(cli("diff", a.id, b.id, "--json", "--db", sq).stdout)
    res = cli("report", b.id, "-o", str(tmp_path / "r.html"), "--db", url)
    assert res.returncode == 0, res.stderr
    assert "198.18.1.1" in (tmp_path / "r.html").read_text()
    res = cli("merge", str(tmp_path / f"{a.id}.jsonl"), "--db", url, "-oJ", str(tmp_path / "m.jsonl"))
    assert res.returncode == 0, res.stderr
    with open_inventory(url, create=False) as p:
        assert len(p.runs()) == 3


def test_bad_or_unreachable_postgresql_is_one_line(pg, tmp_path):
    for url in (pg.url("no_such_db"), "postgresql://x@/y?host=/nonexistent&port=1"):
        res = cli("history", "--db", url)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("hostprint: inventory postgresql://")
    res = cli("history", "--db", pg.url("postgres"))  # a database without hostprint's tables
    assert res.returncode == 2 and "no hostprint tables" in res.stderr
