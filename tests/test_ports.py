"""Port specs, --top-ports and the service-name table (hostprint.ports, hostprint.services)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import parsed_or_one_line_error, usage_error
from hostprint.ports import exclude_ports, parse_ports, top_ports
from hostprint.services import ETC_SERVICES, ServiceTable, default_table, load_table, parse_services, service_name

HAVE_TABLE = default_table().source is not None
needs_table = pytest.mark.skipif(not HAVE_TABLE, reason="no nmap-services or /etc/services installed")
NMAP_TABLE = default_table().has_frequencies
needs_nmap = pytest.mark.skipif(shutil.which("nmap") is None or not NMAP_TABLE,
                                reason="nmap / nmap-services not installed (Debian nmap, nmap-common)")


# ---- -p syntax -----------------------------------------------------------------------------


def test_lists_and_ranges_sorted_unique():
    got = parse_ports("80,22,1000-1003,22,1001")
    assert got == {"tcp": [22, 80, 1000, 1001, 1002, 1003], "udp": [], "sctp": []}


def test_open_ranges_follow_nmap():
    assert parse_ports("-")["tcp"] == list(range(1, 65536))
    assert parse_ports("0-")["tcp"] == list(range(0, 65536))
    assert parse_ports("-1024")["tcp"] == list(range(1, 1025))
    assert parse_ports("65530-")["tcp"] == list(range(65530, 65536))
    assert parse_ports("0")["tcp"] == [0]


def test_protocol_prefixes_stick_until_the_next_one():
    got = parse_ports("U:53,111,137,T:21-23,80,S:2905")
    assert got == {"tcp": [21, 22, 23, 80], "udp": [53, 111, 137], "sctp": [2905]}
    assert parse_ports("53,161", default_proto="udp") == {"tcp": [], "udp": [53, 161], "sctp": []}
    assert parse_ports("t:22,u:53")["udp"] == [53]


@needs_table
def test_service_names():
    got = parse_ports("ssh,https,U:domain")
    assert 22 in got["tcp"] and 443 in got["tcp"] and 53 in got["udp"]
    assert set(parse_ports("http")["tcp"]) >= {80}
    assert set(parse_ports("http*")["tcp"]) >= {80, 443}
    assert parse_ports("SSH") == parse_ports("ssh")


@pytest.mark.parametrize(
    "spec, token, reason",
    [
        ("70000", "70000", "port out of range 0-65535"),
        ("22,1-70000", "1-70000", "port out of range 0-65535"),
        ("100-20", "100-20", "range is reversed (100 > 20)"),
        ("", "", "empty"),
        ("   ", "   ", "empty"),
        ("22,", "22,", "empty item"),
        ("22,,80", "22,,80", "empty item"),
        ("U:", "U:", "empty item"),
        ("1-2-3", "1-2-3", "not a port, range or service name"),
        ("22/tcp", "22/tcp", "not a port, range or service name"),
        ("X:22", "X:22", "not a port, range or service name"),
    ],
)
def test_bad_port_specs_name_the_token(spec, token, reason):
    assert usage_error(parse_ports, spec) == f"bad port spec '{token}': {reason}"


@needs_table
def test_unknown_service_names():
    assert usage_error(parse_ports, "22,abc") == "bad port spec 'abc': unknown service name"
    assert usage_error(parse_ports, "nosuch*") == "bad port spec 'nosuch*': unknown service name"


def test_no_table_at_all(tmp_path):
    empty = load_table([str(tmp_path / "missing")])
    assert empty.source is None and empty.name(22, "tcp") is None
    assert "no nmap-services" in usage_error(parse_ports, "ssh", table=empty)
    assert parse_ports("22", table=empty)["tcp"] == [22]
    assert top_ports(3, table=empty) == [1, 2, 3]


def test_bad_protocol():
    assert "'icmp'" in usage_error(parse_ports, "22", default_proto="icmp")
    assert "'icmp'" in usage_error(top_ports, 10, "icmp")


def test_exclude_ports():
    ports = parse_ports("T:20-25,U:53,161")
    assert exclude_ports(ports, "21-23") == {"tcp": [20, 24, 25], "udp": [53, 161], "sctp": []}
    assert exclude_ports(ports, "53") == {"tcp": [20, 21, 22, 23, 24, 25], "udp": [161], "sctp": []}
    assert exclude_ports(ports, "T:53,25") == {"tcp": [20, 21, 22, 23, 24], "udp": [53, 161], "sctp": []}
    assert "'x-1'" in usage_error(exclude_ports, ports, "x-1")


# ---- properties ----------------------------------------------------------------------------


def _ranges(ports: list[int]) -> list[str]:
    out, start = [], None
    for i, p in enumerate(ports):
        if start is None:
            start = p
        if i + 1 == len(ports) or ports[i + 1] != p + 1:
            out.append(str(p) if p == start else f"{start}-{p}")
            start = None
    return out


_portset = st.sets(st.integers(0, 65535), max_size=30).map(sorted)


@given(_portset, _portset, st.booleans())
def test_spec_round_trip(tcp, udp, udp_first):
    t = ["T:" + ",".join(_ranges(tcp))] if tcp else []
    u = ["U:" + ",".join(_ranges(udp))] if udp else []
    parts = u + t if udp_first else t + u
    if not parts:
        return
    assert parse_ports(",".join(parts)) == {"tcp": tcp, "udp": udp, "sctp": []}


@given(st.text(max_size=30))
@settings(max_examples=400)
def test_junk_never_raises_anything_but_usage_error(junk):
    got = parsed_or_one_line_error(parse_ports, junk)
    if got is not None:
        assert all(0 <= p <= 65535 for v in got.values() for p in v)


@given(st.text(alphabet="0123456789-,TU:", max_size=20))
@settings(max_examples=400)
def test_numeric_junk_never_raises_anything_but_usage_error(junk):
    parsed_or_one_line_error(parse_ports, junk)


# ---- --top-ports and the services table ----------------------------------------------------


@needs_table
def test_top_1000():
    top = top_ports(1000)
    assert len(top) == 1000 and len(set(top)) == 1000 and top == sorted(top)
    assert {22, 80, 443} <= set(top)


@needs_nmap
@pytest.mark.parametrize("n", [1, 10, 1000, 5000])
def test_top_ports_match_nmaps_own_choice(n):
    """nmap prints the ports it chose in <scaninfo>; scan loopback with a connect scan."""
    out = subprocess.run(["nmap", "-sT", "-Pn", "-n", "--top-ports", str(n), "-oX", "-", "127.0.0.1"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    services = re.search(r'<scaninfo [^>]*protocol="tcp"[^>]*services="([^"]+)"', out)[1]
    assert top_ports(n, "tcp") == parse_ports(services)["tcp"]


def test_top_ports_range():
    assert "'0'" in usage_error(top_ports, 0)
    assert "'65536'" in usage_error(top_ports, 65536)
    assert "out of range" in usage_error(top_ports, -5)
    assert top_ports(65535) == list(range(1, 65536))


@pytest.mark.skipif(not os.path.exists(ETC_SERVICES), reason="no /etc/services (Debian netbase)")
def test_etc_services_fallback_is_port_order():
    table = load_table([ETC_SERVICES])
    assert not table.has_frequencies
    ranked = table.ranked["tcp"]
    assert ranked == sorted(ranked) and 22 in ranked
    top = top_ports(10, table=table)
    assert top == ranked[:10]
    assert table.name(22, "tcp") == "ssh" and table.name(53, "udp") == "domain"
    assert table.ports_named("www", "tcp") == [80]  # /etc/services alias


def test_parse_services_formats():
    nmap_style = "# c\nssh\t22/tcp\t0.182286\t# Secure Shell\nhttp\t80/tcp\t0.484143\nunknown\t7/tcp\t0.1\nbad line\n"
    t = parse_services(nmap_style)
    assert t.has_frequencies and t.ranked["tcp"] == [80, 22, 7] and t.name(7, "tcp") is None
    etc_style = "http 80/tcp www # WorldWideWeb\nssh 22/tcp\nx 99999/tcp\ny abc/udp\nz 5/ddp\n"
    t = parse_services(etc_style)
    assert not t.has_frequencies and t.ranked["tcp"] == [22, 80] and t.ports_named("WWW", "tcp") == [80]


@needs_table
def test_service_name_lookup():
    assert service_name(22, "tcp") == "ssh"
    assert service_name(443, "tcp") == "https"
    assert service_name(445, "tcp") == "microsoft-ds"
    assert service_name(53, "UDP") == "domain"
    assert service_name(65535, "sctp") is None
    assert isinstance(default_table(), ServiceTable) and default_table() is default_table()
