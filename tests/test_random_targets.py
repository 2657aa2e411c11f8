"""-iR: random targets that skip what must never be scanned (issue 20).

Safety rule for this file: random targets are only ever *listed*. The generator is a pure
function (nothing sent, nothing resolved); the CLI runs only as `-iR N -sL -n` inside a network
namespace that has nothing but loopback, with an nft table that counts (and drops) every packet
the namespace's IP stack would send, and both that counter and the loopback device's transmit
counter are checked to be zero afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT, needs_root
from hostprint.errors import UsageError
from hostprint.signatures import address_space
from hostprint.targets import random_targets

N = 20_000


def _never_nets(family: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [b.network for b in address_space.blocks() if b.family == family and b.registry != "allocated"]


def test_db_entries_have_sources_and_cover_the_registries():
    blocks = address_space.blocks()
    assert all(b.sources for b in blocks)
    names = {str(b.network): b.name for b in blocks}
    for net in ("10.0.0.0/8", "127.0.0.0/8", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "100.64.0.0/10",
                "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8", "3fff::/20", "5f00::/16"):
        assert net in names, net
    assert address_space.which("198.18.0.10").name == "Benchmarking"
    assert address_space.which("2001:2::1").name == "IETF Protocol Assignments"
    assert address_space.which("8.8.8.8") is None


def test_ipv4_never_special_multicast_or_excluded():
    excl = ["8.0.0.0/8", "203.0.114-115.0-255", "1.2.3.4"]
    got = random_targets(N, seed=11, exclude=excl)
    assert len(got) == len(set(got)) == N
    addrs = [ipaddress.IPv4Address(a) for a in got]
    bad = _never_nets(4) + [ipaddress.IPv4Network("8.0.0.0/8"), ipaddress.IPv4Network("203.0.114.0/23"),
                            ipaddress.IPv4Network("1.2.3.4/32")]
    assert not [a for a in addrs if any(a in n for n in bad)]


def test_ipv4_distribution_is_uniform_over_what_is_allowed():
    """First octets: every allowed /8 is drawn about equally often (a chi-square far below its
    0.1 % critical value), never 0, 10, 127 or 224-255."""
    got = random_targets(N, seed=5)
    octets = Counter(int(a.split(".")[0]) for a in got)
    forbidden = {0, 10, 127, *range(224, 256)}
    assert not forbidden & set(octets)
    # /8s partly taken by special blocks (100, 169, 172, 192, 198, 203) are left out of the test
    partial = {100, 169, 172, 192, 198, 203}
    full = [o for o in range(256) if o not in forbidden | partial]
    total = sum(octets[o] for o in full)
    expected = total / len(full)
    chi2 = sum((octets[o] - expected) ** 2 / expected for o in full)
    assert chi2 < 260, chi2  # 205 degrees of freedom: the 0.1 % critical value is ~277
    # 172.16.0.0/12 is 1/16 of 172/8: the other 15/16 appear in proportion
    assert 0.8 < octets[172] / (expected * 15 / 16) < 1.2


def test_ipv6_only_from_rir_allocations_never_special():
    got = random_targets(5_000, seed=3, family=6, exclude=["2a00::/12"])
    nets = [b.network for b in address_space.blocks() if b.registry == "allocated"]
    addrs = [ipaddress.IPv6Address(a) for a in got]
    assert all(any(a in n for n in nets) for a in addrs)
    assert not [a for a in addrs if any(a in n for n in _never_nets(6))]
    assert not [a for a in addrs if a in ipaddress.IPv6Network("2a00::/12")]
    # the /12s dominate by size: the six left each hold about a sixth
    share = Counter(str(next(n for n in nets if a in n)) for a in addrs)
    twelves = [n for n in share if n.endswith("/12")]
    assert len(twelves) == 6 and all(0.8 < share[n] / (5_000 / 6) < 1.2 for n in twelves), share


def test_seed_reproduces_and_differs():
    assert random_targets(500, seed=42) == random_targets(500, seed=42)
    assert random_targets(500, seed=42) != random_targets(500, seed=43)
    assert random_targets(50, seed=42, family=6) == random_targets(50, seed=42, family=6)


def test_exclusions_that_leave_nothing_fail_in_one_line():
    with pytest.raises(UsageError, match="exclusions leave too little space"):
        random_targets(3, seed=1, exclude=["0.0.0.0/0"], max_tries=10_000)


# ---------------------------------------------------------------------------- the CLI, listing only


@pytest.fixture
def loopback_only():
    """A fresh network namespace: loopback up, nothing else, every IP packet counted and dropped."""
    needs_root()
    ns = f"hpt-ir-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        rules = ("table inet hpt_guard {\n chain out {\n  type filter hook output priority -400; policy accept;\n"
                 "  counter drop\n }\n}\n")
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _sent(ns: str) -> tuple[int, int]:
    """(packets the nft guard saw leave the IP stack, frames loopback transmitted)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "hpt_guard"],
                         capture_output=True, text=True, check=True).stdout
    counter = next(x["rule"]["expr"][0]["counter"]["packets"] for x in json.loads(out)["nftables"] if "rule" in x)
    links = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert [link["ifname"] for link in json.loads(links)] == ["lo"]
    tx = sum(link["stats64"]["tx"]["packets"] for link in json.loads(links))
    return counter, tx


def _list(ns: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOSTPRINT_NO_DNS": "1", "PYTHONPATH": ROOT}
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "hostprint", "scan", *args,
                           "-sL", "-n", "--no-db", "--progress", "never"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


@pytest.mark.lab
def test_cli_lists_random_targets_and_sends_nothing(loopback_only, tmp_path):
    ns = loopback_only
    excl = tmp_path / "excl.txt"
    excl.write_text("64.0.0.0/2\n")
    r = _list(ns, "-iR", "2000", "--seed", "9", "--exclude", "1.0.0.0/8,2.0.0.0/8", "--excludefile", str(excl),
              "-oJ", "-")
    assert r.returncode == 0, r.stderr
    hosts = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    addrs = [h["address"] for h in hosts]
    assert len(addrs) == len(set(addrs)) == 2000 and {h["status"] for h in hosts} == {"unknown"}
    assert addrs == random_targets(2000, seed=9, exclude=["1.0.0.0/8", "2.0.0.0/8", "64.0.0.0/2"])
    bad = _never_nets(4) + [ipaddress.IPv4Network(n) for n in ("1.0.0.0/8", "2.0.0.0/8", "64.0.0.0/2")]
    assert not [a for a in addrs if any(ipaddress.IPv4Address(a) in n for n in bad)]
    again = _list(ns, "-iR", "5", "--seed", "9")
    assert again.returncode == 0 and again.stdout.count("Nmap scan report for ") == 5
    assert _sent(ns) == (0, 0)


@pytest.mark.lab
def test_cli_refuses_ir_with_targets_or_bad_counts(loopback_only):
    for args, why in ((["-iR", "3", "198.18.0.1"], "either -iR N or targets"), (["-iR", "0"], "bad -iR '0'")):
        r = _list(loopback_only, *args)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _sent(loopback_only) == (0, 0)
