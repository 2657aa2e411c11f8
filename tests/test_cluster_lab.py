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
import subprocess
import sys

import pytest

from conftest import ROOT, hostprint, needs_root

pytestmark = pytest.mark.lab

TARGETS = ["198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13"]
PORTS = "20-25,79-81,443,1000-1003,6379,8080"
NPORTS = 6 + 3 + 1 + 4 + 1 + 1
WORKERS = {"w1": "198.18.0.21", "w2": "198.18.0.22", "w3": "198.18.0.23"}
SCHED = "198.18.0.20"


def cluster_lab_spec(name: str):
    from hostprint.lab import HostSpec, LabSpec

    return LabSpec(name=name, hosts=[
        HostSpec(name="t1", address=TARGETS[0], services=["tcp-listen:22", "tcp-listen:80"],
                 firewall=["tcp dport 1000-1099 drop"]),
        HostSpec(name="t2", address=TARGETS[1], services=["tcp-listen:8080", "tcp-listen:443"]),
        HostSpec(name="t3", address=TARGETS[2], services=["tcp-listen:6379"], firewall=["tcp dport 20-23 drop"]),
        HostSpec(name="t4", address=TARGETS[3], services=["tcp-listen:21", "tcp-listen:25", "tcp-listen:81"]),
        HostSpec(name="sched", address=SCHED),
        *[HostSpec(name=n, address=a) for n, a in WORKERS.items()],
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
