"""Issue 21 against a real lab: shards (`--shards N --shard i --seed S`) whose outputs concatenate to
the unsharded scan, `hostprint merge`, `--resume` after SIGINT, the PostgreSQL inventory and the
Dask cluster runner.

The lab: four target hosts, three "machines" for Dask workers and one for the scheduler, each a
network namespace on the lab's bridge. Every test compares with a one-machine scan of the same
targets made in the same lab (no answer is written down here except the lab's own listeners).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, hostprint, needs_root
from hostprint.lab.daskcluster import SCHED, WORKERS, DaskCluster, machine_hosts

pytestmark = pytest.mark.lab

TARGETS = ["198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13"]
PORTS = "20-25,79-81,443,1000-1003,6379,8080"
NPORTS = 6 + 3 + 1 + 4 + 1 + 1


def cluster_lab_spec(name: str):
    from hostprint.lab import HostSpec, LabSpec

    # half-open connections an interrupted SYN scan leaves behind go after one SYN-ACK retransmission
    # (see wait_half_open_gone)
    short = {"net.ipv4.tcp_synack_retries": "1"}
    return LabSpec(name=name, hosts=[
        HostSpec(name="t1", address=TARGETS[0], services=["tcp-listen:22", "tcp-listen:80"],
                 firewall=["tcp dport 1000-1099 drop"], sysctls=short),
        HostSpec(name="t2", address=TARGETS[1], services=["tcp-listen:8080", "tcp-listen:443"], sysctls=short),
        HostSpec(name="t3", address=TARGETS[2], services=["tcp-listen:6379"], firewall=["tcp dport 20-23 drop"],
                 sysctls=short),
        HostSpec(name="t4", address=TARGETS[3], services=["tcp-listen:21", "tcp-listen:25", "tcp-listen:81"],
                 sysctls=short),
        *machine_hosts(),
    ])


@pytest.fixture(scope="module")
def clusterlab():
    needs_root()
    from hostprint.lab import Lab

    with Lab(cluster_lab_spec(f"c{os.getpid() % 100000}"), strict=False) as lab:
        yield lab


def records(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def by_address(recs: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for d in recs:
        assert d["address"] not in out, f"{d['address']} twice"
        out[d["address"]] = d
    return out


def summary(host: dict) -> tuple[str, dict[int, str], dict[str, int]]:
    """status, every listed non-closed port's state, and how many ports ended in each state
    (listed + folded): equal summaries = the same port-by-port result on these hosts, whose
    folded state is the one most ports share."""
    counts: dict[str, int] = {}
    listed = {}
    for p in host["ports"]:
        counts[p["state"]] = counts.get(p["state"], 0) + 1
        listed[p["port"]] = p["state"]
    for e in host["extraports"]:
        counts[e["state"]] = counts.get(e["state"], 0) + e["count"]
    return host["status"], {p: s for p, s in listed.items() if s != "closed"}, counts


def scan_file(lab, path, *args: str) -> list[dict]:
    hostprint(lab, "scan", "-sS", "-Pn", "-n", "-p", PORTS, *args, *TARGETS, "-oJ", str(path), "--no-db",
              "--progress", "never", "-T4")
    return records(path.read_text())


@pytest.mark.parametrize("count", [3, 6])  # 3: whole hosts per shard; 6 > 4 hosts: some hosts' ports split
def test_shards_concatenated_equal_the_unsharded_scan(clusterlab, tmp_path, count):
    whole = by_address(scan_file(clusterlab, tmp_path / "all.jsonl"))
    assert set(whole) == set(TARGETS)
    assert sum(summary(h)[2].get("open", 0) for h in whole.values()) == 8  # the lab's listeners
    files, per_shard = [], []
    for i in range(count):
        f = tmp_path / f"shard{i}.jsonl"
        per_shard.append(scan_file(clusterlab, f, "--shards", str(count), "--shard", str(i), "--seed", "4242"))
        files.append(f)
    # disjoint and complete: every (host, port) pair exactly once over the shards
    pairs: dict[str, int] = {}
    for recs in per_shard:
        for d in recs:
            assert d["shard"]["count"] == count
            pairs[d["address"]] = pairs.get(d["address"], 0) + sum(summary(d)[2].values())
    assert pairs == {a: NPORTS for a in TARGETS}
    concatenated = [d for recs in per_shard for d in recs]
    if count <= len(TARGETS):  # whole hosts: the concatenation is the scan, each host once
        cat = by_address(concatenated)
        assert {a: summary(h) for a, h in cat.items()} == {a: summary(h) for a, h in whole.items()}
    merged = subprocess.run([sys.executable, "-m", "hostprint", "merge", *map(str, files)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert merged.returncode == 0, merged.stderr
    got = by_address(records(merged.stdout))
    assert {a: summary(h) for a, h in got.items()} == {a: summary(h) for a, h in whole.items()}
    assert [d["address"] for d in records(merged.stdout)] == sorted(TARGETS, key=lambda a: tuple(map(int, a.split("."))))
    # a missing shard is refused unless asked; the same shard twice is refused
    r = subprocess.run([sys.executable, "-m", "hostprint", "merge", *map(str, files[1:])], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "shard(s) 0 of" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "hostprint", "merge", str(files[0]), str(files[0])],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr


def test_another_seed_deals_other_hosts_but_the_same_result(clusterlab, tmp_path):
    deals = []
    for seed in ("1", "2", "3", "4"):
        recs = scan_file(clusterlab, tmp_path / f"s{seed}.jsonl", "--shards", "2", "--shard", "0", "--seed", seed)
        deals.append(frozenset(d["address"] for d in recs))
        assert len(deals[-1]) == 2
    assert len(set(deals)) > 1  # the seed decides the deal (4 seeds all dealing the same pair: 1 in 216)


def _interrupted(lab, argv: list[str], out, hosts_before_sigint: int = 1) -> subprocess.CompletedProcess:
    """Start the scan, wait until `hosts_before_sigint` hosts are in its -oJ file, SIGINT it (by PID)."""
    env = {**os.environ, "HOSTPRINT_DB": os.environ.get("HOSTPRINT_DB", "/tmp/hostprint-test.sqlite")}
    p = subprocess.Popen(["ip", "netns", "exec", lab.scanner_ns, sys.executable, "-m", "hostprint", *argv],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return sigint_when(p, lambda: out.exists() and len(records(out.read_text())) >= hosts_before_sigint, 0.05)


def sigint_when(p: subprocess.Popen, ready, every: float) -> subprocess.CompletedProcess:
    """SIGINT `p` (by PID) once `ready()` holds (polled every `every` s); its exit and output. The
    process must still run then: a run that ended first could not be interrupted (give it more work)."""
    try:
        while p.poll() is None and not ready():
            time.sleep(every)
        assert p.poll() is None, "the run ended before it could be interrupted: give it more work"
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


def wait_half_open_gone(lab, names=("t1", "t2", "t3", "t4")) -> None:
    """An interrupted SYN scan leaves half-open connections on the targets (SYN-ACKs that arrived
    after it stopped were never reset); the resumed scan uses the same source ports, and a target
    answers a new SYN on such a 4-tuple with an ACK, not a SYN-ACK (the port looks filtered).
    Wait until the targets have dropped them (event, not time: SYN-RECV sockets listed by ss)."""
    for name in names:
        while lab.exec(name, ["ss", "-tnH", "state", "syn-recv"], capture_output=True, text=True).stdout.strip():
            time.sleep(0.2)


@pytest.mark.parametrize("how", ["file", "inventory", "shard"])
def test_resume_after_sigint_equals_an_uninterrupted_run(clusterlab, tmp_path, how):
    shard = ["--shards", "2", "--shard", "1", "--seed", "77"] if how == "shard" else []
    targets = [*TARGETS, *WORKERS.values()]  # more hosts: time to interrupt between two of them
    flags = ["-sS", "-Pn", "-n", "-p", "1-4000", "-T4", "--max-hostgroup", "1", *shard]
    whole_f = tmp_path / "whole.jsonl"
    hostprint(clusterlab, "scan", *flags, *targets, "-oJ", str(whole_f), "--no-db", "--progress", "never")
    whole = by_address(records(whole_f.read_text()))
    out, db = tmp_path / "cut.jsonl", tmp_path / "inv.sqlite"
    r = _interrupted(clusterlab, ["scan", *flags, *targets, "-oJ", str(out), "--db", str(db), "--progress", "never"],
                     out)
    assert r.returncode == 130, r.stderr
    done_before = {d["address"] for d in records(out.read_text()) if not d.get("incomplete")}
    assert 0 < len(done_before) < len(whole)
    wait_half_open_gone(clusterlab)
    resume = str(out) if how != "inventory" else "last"
    r = hostprint(clusterlab, "scan", "--resume", resume, "--db", str(db), "--progress", "never")
    if how == "inventory":
        got_text = hostprint(clusterlab, "history", "last", "--json", "--db", str(db)).stdout
    else:
        got_text = out.read_text()
    got = by_address([d for d in records(got_text) if not d.get("incomplete")])
    assert {a: summary(h) for a, h in got.items()} == {a: summary(h) for a, h in whole.items()}, (done_before,
                                                                                                   got_text)
    reported = set(re.findall(r"^Nmap scan report for (\S+)$", r.stdout, re.M))
    assert reported == set(whole) - done_before  # what was finished was not probed again


@pytest.fixture(scope="module")
def pg():
    from pgserver import PgServer, pg_bin

    if pg_bin() is None:
        pytest.skip("needs Debian's postgresql package (scripts/setup.sh)")
    with PgServer() as server:
        yield server


def test_a_scan_recorded_in_postgresql_reads_back_as_from_sqlite(clusterlab, pg, tmp_path):
    url, sq = pg.createdb("labscan"), str(tmp_path / "inv.sqlite")
    for db in (url, sq):
        hostprint(clusterlab, "scan", "-sS", "-Pn", "-n", "-p", PORTS, *TARGETS, "--db", db, "--progress", "never")
    runs = {db: records(hostprint(clusterlab, "history", "last", "--json", "--db", db).stdout) for db in (url, sq)}
    assert {d["address"]: summary(d) for d in runs[url]} == {d["address"]: summary(d) for d in runs[sq]}
    assert len(runs[url]) == len(TARGETS)
    listed = hostprint(clusterlab, "history", "--db", url).stdout
    assert "-sS" in listed and "postgresql://hostprint@" in listed


def dask_cluster(lab, workers: list[str]) -> DaskCluster:
    """hostprint/lab/daskcluster.py's scheduler and workers (bench/cluster uses the same), importing
    the hostprint under test."""
    return DaskCluster(lab, workers, ROOT)


def cluster_scan(lab, dask: DaskCluster, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.scanner_ns, sys.executable, "-m", "hostprint", "cluster",
                             "scan", "--scheduler", dask.address, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dask.env, **kw)


CLUSTER_FLAGS = ["-sS", "-Pn", "-n", "-T4"]


@pytest.fixture(scope="module")
def dask3(clusterlab):
    with dask_cluster(clusterlab, list(WORKERS)) as dask:
        yield dask


def xml_hosts(path) -> dict[str, tuple]:
    """-oX per host: status, every listed port (protocol, number, state, reason), folded ports."""
    import xml.etree.ElementTree as ET

    out = {}
    for host in ET.parse(path).getroot().iter("host"):
        ports = sorted((p.get("protocol"), int(p.get("portid")), p.find("state").get("state"),
                        p.find("state").get("reason")) for p in host.iter("port"))
        extra = sorted((e.get("state"), e.get("count")) for e in host.iter("extraports"))
        out[host.find("address").get("addr")] = (host.find("status").get("state"), ports, extra)
    return out


def gnmap_hosts(path) -> list[str]:
    """-oG's host lines (the header and footer name the command and the times)."""
    return sorted(ln for ln in path.read_text().splitlines() if ln.startswith("Host: "))


def normal_hosts(path) -> dict[str, list[str]]:
    """-oN per host: its port table and "Not shown" lines (latency and times differ run to run)."""
    out: dict[str, list[str]] = {}
    cur = None
    for ln in path.read_text().splitlines():
        if m := re.match(r"^Nmap scan report for (\S+)", ln):
            cur = out.setdefault(m.group(1), [])
        elif cur is not None and re.match(r"^(Not shown|PORT|\d+/(tcp|udp)\s)", ln):
            cur.append(ln)
    return out


def test_cluster_scan_equals_one_machine_port_by_port(clusterlab, dask3, pg, tmp_path):
    hostprint(clusterlab, "scan", *CLUSTER_FLAGS, "-p", PORTS, *TARGETS, "-oA", str(tmp_path / "one"), "--no-db",
              "--progress", "never")
    one = by_address(records((tmp_path / "one.jsonl").read_text()))
    url = pg.createdb("cluster1")
    p = cluster_scan(clusterlab, dask3, "--shards", "6", "--seed", "5", "-oA", str(tmp_path / "c"),
                     "-oG", str(tmp_path / "c.grep"), "--db", url, *CLUSTER_FLAGS, "-p", PORTS, *TARGETS)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    got = by_address(records((tmp_path / "c.jsonl").read_text()))
    assert {a: summary(h) for a, h in got.items()} == {a: summary(h) for a, h in one.items()}
    stored = by_address(records(hostprint(clusterlab, "history", "last", "--json", "--db", url).stdout))
    assert {a: summary(h) for a, h in stored.items()} == {a: summary(h) for a, h in one.items()}
    assert len(set(re.findall(r"done on (tcp://[0-9.]+):", err))) >= 2, err  # the work was spread
    # -oX, -oG (given beside -oA: it wins, as in scan), -oN: what a one-machine scan writes, host by host
    assert xml_hosts(tmp_path / "c.xml") == xml_hosts(tmp_path / "one.xml")
    assert len(xml_hosts(tmp_path / "c.xml")) == len(TARGETS)
    assert gnmap_hosts(tmp_path / "c.grep") == gnmap_hosts(tmp_path / "one.gnmap") != []
    assert not (tmp_path / "c.gnmap").exists()
    assert normal_hosts(tmp_path / "c.nmap") == normal_hosts(tmp_path / "one.nmap")
    assert sum(len(v) for v in normal_hosts(tmp_path / "c.nmap").values()) > len(TARGETS)


def host_rows(db) -> int | None:
    """Hosts of the inventory's one run so far (None before the client created the file)."""
    import sqlite3

    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM hosts").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is being created
        return None


def run_row(db) -> tuple:
    import sqlite3

    con = sqlite3.connect(str(db))
    try:
        finished, stats = con.execute("SELECT finished, stats FROM runs").fetchone()
    finally:
        con.close()
    return finished, json.loads(stats)


def test_hosts_reach_the_inventory_one_by_one_inside_a_shard(clusterlab, dask3, tmp_path):
    """One shard holding every host: per-shard recording would go from 0 hosts to all at once."""
    targets = [*TARGETS, SCHED]
    db = tmp_path / "inv.sqlite"
    p = cluster_scan(clusterlab, dask3, "--shards", "1", "--seed", "3", "--db", str(db), "--progress", "always",
                     *CLUSTER_FLAGS, "--max-hostgroup", "1", "-p", "1-8000", *targets)
    seen = set()
    try:
        while p.poll() is None:
            seen.add(host_rows(db))
            time.sleep(0.01)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert any(n is not None and 0 < n < len(targets) for n in seen), seen
    assert host_rows(db) == len(targets)
    finished, stats = run_row(db)
    assert finished is not None and "interrupted" not in stats
    # the live table of Dask's task states (forced: stderr is a pipe here)
    assert "processing" in err and "memory" in err and "SHARD" in err, err[-2000:]


def test_resume_of_an_interrupted_cluster_run_reprobes_nothing_done(clusterlab, dask3, tmp_path):
    targets = [*TARGETS, SCHED]
    flags = [*CLUSTER_FLAGS, "--max-hostgroup", "1", "-p", "1-12000", *targets]
    one = by_address(scan_file_flags(clusterlab, tmp_path / "one.jsonl", flags))
    wait_half_open_gone(clusterlab, ["t1", "t2", "t3", "t4", "sched"])
    db, cut = tmp_path / "inv.sqlite", tmp_path / "cut.jsonl"
    p = cluster_scan(clusterlab, dask3, "--shards", "3", "--seed", "9", "--db", str(db), "-oJ", str(cut), *flags)
    err = sigint_when(p, lambda: bool(host_rows(db)), 0.02).stderr
    assert p.returncode == 130, err
    assert "cluster scan --resume" in err, err
    finished, stats = run_row(db)  # marked, not left "unfinished"
    assert finished is not None and stats["interrupted"]["by"] == "SIGINT", stats
    assert "interrupted:" in hostprint(clusterlab, "history", "--db", str(db)).stdout
    before = by_address(records(hostprint(clusterlab, "history", "last", "--json", "--db", str(db)).stdout))
    assert 0 < len(before) < len(targets), before.keys()
    assert {d["address"] for d in records(cut.read_text())} == set(before)  # -oJ written at the interruption
    for name in WORKERS:  # the cancelled tasks' scans were stopped (by the run's Dask Event), not left running
        while dask3.busy(name):
            time.sleep(0.1)
    wait_half_open_gone(clusterlab, ["t1", "t2", "t3", "t4", "sched"])
    r = hostprint(clusterlab, "cluster", "scan", "--scheduler", dask3.address, "--resume", "last", "--db", str(db),
                  "--progress", "never")
    assert "resuming run" in r.stderr, r.stderr
    after = by_address(records(hostprint(clusterlab, "history", "last", "--json", "--db", str(db)).stdout))
    assert {a: summary(h) for a, h in after.items()} == {a: summary(h) for a, h in one.items()}
    def host_part(d: dict) -> dict:  # the record without its run's `scan` block (the run's end changed)
        return {k: v for k, v in d.items() if k != "scan"}

    # what was done was not probed again: the same records, times and round trips included
    assert {a: host_part(after[a]) for a in before} == {a: host_part(d) for a, d in before.items()}
    assert {a: summary(h) for a, h in by_address(records(cut.read_text())).items()} == \
        {a: summary(h) for a, h in one.items()}  # the recorded -oJ, now whole
    finished, stats = run_row(db)
    assert finished is not None and "interrupted" not in stats and stats["cluster"]["shards"] == 3


def test_a_worker_killed_mid_run_changes_nothing(clusterlab, dask3, tmp_path):
    flags = [*CLUSTER_FLAGS, "-p", "1-12000", *TARGETS]
    one = by_address(scan_file_flags(clusterlab, tmp_path / "one.jsonl", flags))
    db = tmp_path / "inv.sqlite"
    dask = dask3
    p = cluster_scan(clusterlab, dask, "--shards", "9", "--seed", "11", "-oJ", str(tmp_path / "c.jsonl"),
                     "--db", str(db), *flags)
    try:
        while not dask.busy("w2"):
            assert p.poll() is None, "the cluster scan ended before w2 took a shard"
            time.sleep(0.02)
        dask.kill("w2")  # by PID, mid-shard
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        dask.start_worker("w2")  # the module's cluster whole again
    assert p.returncode == 0, err
    # the inventory, fed host by host (the killed attempt's streamed hosts and the re-run's): each host once
    assert host_rows(db) == len(TARGETS)
    stored = by_address(records(hostprint(clusterlab, "history", "last", "--json", "--db", str(db)).stdout))
    assert {a: summary(h) for a, h in stored.items()} == {a: summary(h) for a, h in one.items()}
    if os.environ.get("HOSTPRINT_TEST_SHOW"):
        print(err)
    got = by_address(records((tmp_path / "c.jsonl").read_text()))  # each host once
    assert {a: summary(h) for a, h in got.items()} == {a: summary(h) for a, h in one.items()}
    done = re.findall(r"shard (\d+) done on (tcp://[0-9.]+):", err)
    assert sorted(int(i) for i, _ in done) == list(range(9))  # every shard once
    # w2 was killed in its first shard: that shard was run again by another worker
    assert WORKERS["w2"] not in {w.split("//")[1].split(":")[0] for _, w in done}


def test_a_shard_rerun_skips_the_hosts_its_dead_attempt_streamed(clusterlab, dask3, tmp_path):
    """One shard with every host, its worker killed (by PID) after a host reached the inventory:
    Dask runs the task again elsewhere, and the re-run reads the run's event log and leaves out the
    hosts the dead attempt streamed whole."""
    targets = [*TARGETS, SCHED]
    flags = [*CLUSTER_FLAGS, "--max-hostgroup", "1", "-p", "1-12000", *targets]
    one = by_address(scan_file_flags(clusterlab, tmp_path / "one.jsonl", flags))
    wait_half_open_gone(clusterlab, ["t1", "t2", "t3", "t4", "sched"])
    db = tmp_path / "inv.sqlite"
    p = cluster_scan(clusterlab, dask3, "--shards", "1", "--seed", "4", "--db", str(db), "-oJ",
                     str(tmp_path / "c.jsonl"), *flags)
    killed = []
    try:
        while not (host_rows(db) or 0):
            assert p.poll() is None, "the cluster scan ended before a host was in"
            time.sleep(0.02)
        streamed = host_rows(db)
        killed = [n for n in WORKERS if dask3.busy(n)]
        assert len(killed) == 1 and streamed < len(targets), (killed, streamed)
        dask3.kill(killed[0])
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for n in killed:
            dask3.start_worker(n)
    assert p.returncode == 0, err
    m = re.search(r"done on .*?\((\d+) streamed by an earlier attempt, not probed again\)", err)
    assert m and int(m.group(1)) >= streamed, err
    got = by_address(records((tmp_path / "c.jsonl").read_text()))  # each host once
    assert {a: summary(h) for a, h in got.items()} == {a: summary(h) for a, h in one.items()}
    assert host_rows(db) == len(targets)


def test_a_shard_failing_on_every_worker_is_one_line_and_the_run_is_marked(clusterlab, dask3, tmp_path):
    """-e names an interface of the workers' machines (the client does not check it): here none has
    it, so every attempt of a shard fails; the client says so in one line and marks the record."""
    db = tmp_path / "inv.sqlite"
    r = hostprint(clusterlab, "cluster", "scan", "--scheduler", dask3.address, "--shards", "2", "--seed", "1",
                  "--db", str(db), "-q", *CLUSTER_FLAGS, "-e", "nosuch0", "-p", "80", *TARGETS, check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cluster scan failed" in lines[0] and "no such interface" in lines[0], r.stderr
    finished, stats = run_row(db)
    assert finished is not None and stats["interrupted"]["by"] == "error", stats


def test_cluster_host_discovery_equals_one_machine(clusterlab, dask3, tmp_path):
    """-sn through the cluster: shards are sets of hosts (down ones included in -oJ)."""
    alladdr = [*TARGETS, "198.18.0.30"]  # one address nobody has
    flags = ["-sn", "-PE", "-PS22,80,443", "-n"]
    hostprint(clusterlab, "scan", *flags, *alladdr, "-oJ", str(tmp_path / "one.jsonl"), "-oX", str(tmp_path / "one.xml"),
              "--no-db", "--progress", "never")
    one = by_address(records((tmp_path / "one.jsonl").read_text()))
    r = hostprint(clusterlab, "cluster", "scan", "--scheduler", dask3.address, "--shards", "3", "--seed", "2", "-oJ",
                  str(tmp_path / "c.jsonl"), "-oX", str(tmp_path / "c.xml"), "--no-db", "--progress", "never", *flags,
                  *alladdr)
    got = by_address(records((tmp_path / "c.jsonl").read_text()))
    assert {a: h["status"] for a, h in got.items()} == {a: h["status"] for a, h in one.items()}
    assert sorted(h["status"] for h in got.values()) == ["down"] + ["up"] * len(TARGETS)
    assert xml_hosts(tmp_path / "c.xml") == xml_hosts(tmp_path / "one.xml")
    assert len(re.findall(r"shard \d+ done on", r.stderr)) == 3, r.stderr


def scan_file_flags(lab, path, flags: list[str]) -> list[dict]:
    hostprint(lab, "scan", *flags, "-oJ", str(path), "--no-db", "--progress", "never")
    return records(path.read_text())


def test_discovery_and_service_scan_shard_too(clusterlab, tmp_path):
    """discover shards the hosts; -sV (per port) runs where its ports are."""
    alladdr = [*TARGETS, "198.18.0.30"]  # one address nobody has
    for cmd in (["discover", "-PE", "-PS22,80,443", *alladdr], ["scan", "-sS", "-sV", "-Pn", "-p", "21,22,80,443,8080",
                                                                 *TARGETS]):
        whole = by_address(records(hostprint(clusterlab, *cmd, "-n", "-oJ", "-", "--no-db", "--progress",
                                             "never").stdout))
        def shard(i: int) -> list[dict]:
            return records(hostprint(clusterlab, *cmd, "-n", "--shards", "3", "--shard", str(i), "--seed", "3",
                                     "-oJ", "-", "--no-db", "--progress", "never").stdout)

        with ThreadPoolExecutor(3) as pool:  # at the same time, as shards run on a cluster (-sV waits ~10 s a run)
            parts = [d for ds in pool.map(shard, range(3)) for d in ds]
        got = by_address(parts)  # each host in one shard only
        assert set(got) == set(whole), cmd
        for a, h in whole.items():
            assert (got[a]["status"], summary(got[a])) == (h["status"], summary(h)), (cmd, a)
            svc = {p["port"]: (p.get("service") or {}).get("name") for p in h["ports"] if p["state"] == "open"}
            assert {p["port"]: (p.get("service") or {}).get("name") for p in got[a]["ports"]
                    if p["state"] == "open"} == svc


def os_names(h: dict) -> list[str]:
    return [m["name"] for m in (h.get("os") or {}).get("matches") or []][:1]


def test_os_detection_runs_once_per_host_in_its_owner_shard(clusterlab, tmp_path):
    cmd = ["scan", "-sS", "-O", "-Pn", "-n", "-p", "21,22,25,80,81,443,8080,6379,1000", *TARGETS]
    whole = by_address(records(hostprint(clusterlab, *cmd, "-oJ", "-", "--no-db", "--progress", "never").stdout))
    assert all(os_names(h) for h in whole.values())
    for count in (2, 6):  # whole hosts; split hosts (the owner shard runs -O on its share of the ports)
        def shard(i: int, count: int = count) -> subprocess.CompletedProcess:
            return hostprint(clusterlab, *cmd, "--shards", str(count), "--shard", str(i), "--seed", "8", "-oJ", "-",
                             "--no-db", "--progress", "never")

        parts = []
        with ThreadPoolExecutor(2) as pool:  # shards side by side, as on a cluster
            for r in pool.map(shard, range(count)):
                parts += records(r.stdout)
                if count > len(TARGETS) and "host-level techniques" in r.stderr:
                    assert "see only this shard's ports" in r.stderr
        with_os: dict[str, int] = {}
        for d in parts:
            if os_names(d):
                with_os[d["address"]] = with_os.get(d["address"], 0) + 1
        assert with_os == {a: 1 for a in TARGETS}, (count, with_os)  # each host's -O ran in one shard
        if count <= len(TARGETS):
            got = by_address(parts)
            assert {a: os_names(h) for a, h in got.items()} == {a: os_names(h) for a, h in whole.items()}


def test_timing_shards_together_equal_the_unsharded_run(clusterlab, tmp_path):
    """timing is host-level: each host is tested in the one shard that owns it, on all its ports."""
    cmd = ["timing", *TARGETS, "-p", "21,80", "--tests", "s", "--cron-timeout", "4"]
    whole = by_address(records(hostprint(clusterlab, *cmd, "-oJ", "-").stdout))
    assert set(whole) == set(TARGETS)
    parts = []
    for i in range(3):
        r = hostprint(clusterlab, *cmd, "--shards", "3", "--shard", str(i), "--seed", "6", "-oJ", "-")
        recs = records(r.stdout)
        assert all(d["shard"]["index"] == i for d in recs)
        parts += recs
    got = by_address(parts)  # each host in one shard only

    def seen(h: dict) -> tuple:
        """What the tests saw: per test and port, its status and how many segments came back (the
        class named from them is left out: within a short listen window it is ambiguous)."""
        tests = ((h.get("os") or {}).get("timing") or {}).get("tests") or []
        return (h["status"], summary(h), sorted((t["test"], t["port"], t["status"], len(t["arrivals"]),
                                                 t["rst"] is not None) for t in tests))

    assert {a: seen(h) for a, h in got.items()} == {a: seen(h) for a, h in whole.items()}
    assert sum(summary(h)[2].get("open", 0) for h in got.values()) == 2  # t1's 80, t4's 21
    assert sum(len(seen(h)[2]) for h in got.values()) == 2 * len(TARGETS)  # a SYN_RCVD test per port
