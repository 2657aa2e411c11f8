"""Shards without a network: the keyed permutation is a bijection, the N plans of a job are disjoint
and complete, the plan does not depend on the order targets were typed, bad flags are one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from hostprint.errors import UsageError
from hostprint.probes.shard import Permutation, ShardSpec, parse_shard, port_items


@given(st.integers(1, 5000), st.integers(0, 2**64 - 1))
@settings(max_examples=60, deadline=None)
def test_permutation_is_a_bijection(n, seed):
    perm = Permutation(n, seed, "hosts")[range(n)]
    assert sorted(perm.tolist()) == list(range(n))


def test_permutation_depends_on_the_seed():
    a, b = Permutation(1000, 1, "hosts")[range(1000)], Permutation(1000, 2, "hosts")[range(1000)]
    assert not np.array_equal(a, b)
    assert np.array_equal(a, Permutation(1000, 1, "hosts")[range(1000)])


def pairs_of(plan) -> list[tuple[str, str, int]]:
    return [(a, proto, p) for part in plan.parts for a in part.addresses
            for proto, ports in part.ports.items() for p in ports]


@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 50), st.integers(0, 2**64 - 1))
@settings(max_examples=80, deadline=None)
def test_shards_are_disjoint_and_complete(hosts, ports, count, seed):
    targets = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(hosts)]
    portmap = {"tcp": list(range(1, ports + 1)), "udp": [53] if ports % 2 else []}
    want = [(a, proto, p) for a in targets for proto, p in port_items(portmap)]
    got: list[tuple[str, str, int]] = []
    owners: dict[str, int] = {}
    for i in range(count):
        plan = ShardSpec(count, i, seed).plan(list(reversed(targets)), portmap)
        got += pairs_of(plan)
        for part in plan.parts:
            for a in part.addresses:
                if part.owner:
                    assert a not in owners, f"{a} owned by shards {owners[a]} and {i}"
                    owners[a] = i
        if hosts >= count:
            assert not plan.split  # whole hosts when there are enough of them
    assert sorted(got) == sorted(want)
    assert set(owners) == set(targets)  # every host's host-level techniques run exactly once


def test_the_plan_ignores_target_order_and_duplicates():
    t = ["198.18.0.3", "198.18.0.1", "198.18.0.2", "198.18.0.1"]
    a = ShardSpec(2, 0, 7).plan(t, {"tcp": [80, 22]})
    b = ShardSpec(2, 0, 7).plan(sorted(set(t)), {"tcp": [22, 80]})
    assert pairs_of(a) == pairs_of(b) and a.space == b.space


@pytest.mark.parametrize("shards,shard,seed,words", [
    (3, "5", "1", "shard numbers of --shards 3 are 0 to 2"),
    (3, "1", None, "give --seed S"),
    (None, "1", "1", "give --shards N too"),
    (3, None, "1", "give --shard i too"),
    (None, "4/3", "1", "1 <= x <= y"),
    (2, "1/3", "1", "says 3 shards but --shards says 2"),
    (3, "1", "-4", "bad --seed"),
])
def test_bad_shard_flags(shards, shard, seed, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        parse_shard(shards, shard, seed)


def test_masscan_form_is_one_based():
    assert parse_shard(None, "1/3", "9") == ShardSpec(3, 0, 9)
    assert parse_shard(3, "2", "9") == ShardSpec(3, 2, 9)


@pytest.mark.parametrize("argv", [
    ["--shards", "3", "--shard", "5", "--seed", "1"],
    ["--shards", "0", "--shard", "0", "--seed", "1"],
    ["--shards", "3", "--shard", "1"],
    ["--db", "postgresql://nobody@[::1"],
])
def test_bad_cli_input_is_one_line_before_any_packet(argv):
    r = subprocess.run([sys.executable, "-m", "hostprint", "scan", "-sT", "-Pn", "-p", "22", *argv, "127.0.0.1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("hostprint: ")


@pytest.mark.parametrize("argv,words", [
    (["--scheduler", "tcp://127.0.0.1:9", "-sS", "-p", "99999", "127.0.0.1"], "bad port spec"),
    (["--scheduler", "127.0.0.1", "-sT", "-p", "22", "127.0.0.1"], "bad --scheduler"),
    (["--scheduler", "tcp://127.0.0.1:9", "-sT", "-p", "22", "127.0.0.1", "--shard", "1"], "--shard belongs before"),
    (["--scheduler", "tcp://127.0.0.1:9", "-sT", "-p", "22", "127.0.0.1", "-oX", "/proc/nope/x.xml", "--no-db"],
     "cannot write oX output"),
    (["--scheduler", "tcp://127.0.0.1:9", "-oA", "nodir/base", "-sT", "-p", "22", "127.0.0.1", "--no-db"],
     "directory nodir is missing"),
    (["--resume", "last", "--no-db"], "drop --no-db"),
    (["--resume", "last", "--db", "inv.sqlite", "-sT", "127.0.0.1"], "takes the recorded job"),
    (["-sT", "-p", "22", "127.0.0.1"], "give --scheduler"),
    (["--scheduler", "tcp://127.0.0.1:9", "-sT", "-O", "--os-db", "/nonexistent", "-p", "22", "127.0.0.1"],
     "--os-db: no such DB"),
    (["--scheduler", "tcp://127.0.0.1:9", "--shards", "0", "-sT", "-p", "22", "127.0.0.1"], "bad --shards"),
    (["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1", "-sT", "-p", "22", "127.0.0.1", "--no-db"],
     "cannot reach the Dask scheduler"),
])
def test_cluster_scan_bad_input_is_one_line_before_any_task(argv, words, tmp_path):
    r = subprocess.run([sys.executable, "-m", "hostprint", "cluster", "scan", *argv], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert words in r.stderr


@pytest.mark.parametrize("argv,words", [
    (["--shards", "3", "--shard", "5", "--seed", "1"], "bad --shard"),
    (["--shards", "3", "--shard", "1"], "give --seed"),
])
def test_timing_bad_shard_flags_are_one_line(argv, words):
    r = subprocess.run([sys.executable, "-m", "hostprint", "timing", "127.0.0.1", "-p", "80", *argv],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert words in r.stderr
