"""Target specs, -iL files and nmap result files (hostprint.targets)."""

from __future__ import annotations

import io
import ipaddress
import itertools
import shutil
import socket
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import parsed_or_one_line_error, usage_error
from hostprint.errors import UsageError
from hostprint.services import service_name
from hostprint.targets import expand_targets, read_nmap_results, read_target_file, split_target_list


def expand(*specs: str, **kw) -> list[str]:
    kw.setdefault("resolve", False)
    return expand_targets(list(specs), **kw)


@pytest.fixture
def no_dns(monkeypatch):
    """Name lookups of made-up names would leave the machine (rule 1); fail them here."""

    def fail(*_a, **_kw):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)


# ---- syntax examples --------------------------------------------------------------


def test_single_and_cidr_include_network_and_broadcast():
    assert expand("198.18.0.7") == ["198.18.0.7"]
    net = expand("198.18.0.0/24")
    assert len(net) == 256 and net[0] == "198.18.0.0" and net[-1] == "198.18.0.255"
    assert expand("198.18.0.77/30") == ["198.18.0.76", "198.18.0.77", "198.18.0.78", "198.18.0.79"]
    assert expand("198.18.0.9/32") == ["198.18.0.9"]


def test_octet_ranges_and_lists():
    assert expand("198.18.0.1,3,5-7") == ["198.18.0.1", "198.18.0.3", "198.18.0.5", "198.18.0.6", "198.18.0.7"]
    got = expand("198.18.1-3.1-254")
    assert len(got) == 3 * 254 and got[0] == "198.18.1.1" and got[253] == "198.18.1.254" and got[254] == "198.18.2.1"
    assert expand("198.18.0.-") == expand("198.18.0.*") == expand("198.18.0.0/24")
    assert expand("198.18.0.250-") == [f"198.18.0.{i}" for i in range(250, 256)]
    assert expand("198.18.0.-2") == ["198.18.0.0", "198.18.0.1", "198.18.0.2"]
    assert expand("198.18.0.7,5,5-6") == ["198.18.0.5", "198.18.0.6", "198.18.0.7"]
    assert expand("198.18.0.007") == ["198.18.0.7"]


def test_input_order_and_dedup_and_whitespace():
    assert expand("198.18.0.9", "198.18.0.1-2", "198.18.0.9 198.18.0.2\t198.18.0.3") == [
        "198.18.0.9", "198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert expand_targets("198.18.0.1", resolve=False) == ["198.18.0.1"]  # a lone string is one spec


def test_exclude_same_syntax():
    got = expand("198.18.0.0/28", exclude=["198.18.0.0/30", "198.18.0.5,7", "198.18.0.10-"])
    assert got == ["198.18.0.4", "198.18.0.6", "198.18.0.8", "198.18.0.9"]
    # a big exclusion is tested by membership, not expanded
    assert expand("198.18.0.0/24", exclude=["128.0.0.0/1"]) == []
    assert len(expand("198.18.0.0/24", exclude=["0.0.0.0/1"])) == 256
    assert expand("198.18.0.1-3", exclude=["198.0-255.*.2"]) == ["198.18.0.1", "198.18.0.3"]


def test_hostname_resolution_real_localhost():
    assert expand_targets(["localhost"]) == ["127.0.0.1"]
    assert expand_targets(["localhost/31", "127.0.0.1"]) == ["127.0.0.0", "127.0.0.1"]
    assert expand_targets(["127.0.0.0/30"], exclude=["localhost"]) == ["127.0.0.0", "127.0.0.2", "127.0.0.3"]


def test_unresolvable_host(no_dns):
    assert usage_error(expand_targets, ["no-such-host.example"]) == 'Failed to resolve "no-such-host.example"'
    warned: list[str] = []
    names: dict[str, str] = {}
    assert expand_targets(["no-such-host.example", "198.18.0.1"], on_unresolved=warned.append,
                          names=names) == ["198.18.0.1"]
    assert warned == ['Failed to resolve "no-such-host.example"'] and names == {}


def test_hostnames_refused_without_resolution():
    assert "'localhost'" in usage_error(expand, "localhost")


def test_big_spec_expands_sensibly():
    got = expand("198.18.0.0/16")
    assert len(got) == 65536 and len(set(got)) == 65536
    assert got[0] == "198.18.0.0" and got[256] == "198.18.1.0" and got[-1] == "198.18.255.255"
    assert expand("198.18.*.*") == got


def test_limit_names_the_spec():
    assert "'0.0.0.0/0'" in usage_error(expand, "0.0.0.0/0")
    assert "'198.18.0.0/24'" in usage_error(expand, "198.18.0.0/24", limit=100)
    msg = usage_error(expand, "198.18.0.0/26", "198.18.1.0/26", limit=100)
    assert "'198.18.1.0/26'" in msg
    assert len(expand("198.18.0.0/26", "198.18.0.0/26", limit=64)) == 64  # duplicates do not count


@pytest.mark.parametrize(
    "token, reason",
    [
        ("198.18.0.300", "octet 300 out of range"),
        ("198.18.0", "expected 4 octets, got 3"),
        ("198.18.0.1.5", "expected 4 octets, got 5"),
        ("198.18..1", "empty octet"),
        ("198.18.0.1,,2", "empty octet"),
        ("198.18.0.9-3", "octet range 9-3 is reversed"),
        ("198.18.0.1-2-3", "bad octet '1-2-3'"),
        ("198.18.0.0/33", "prefix '/33' is not /0-/32"),
        ("198.18.0.0/", "prefix '/' is not /0-/32"),
        ("198.18.0.0/x", "prefix '/x' is not /0-/32"),
        ("198.18.0.1-5/24", "a /prefix cannot be combined with octet ranges"),
        ("/24", "empty address"),
        ("bad_host!", "not an address, range or host name"),
        ("-leading-dash", "not an address, range or host name"),
        ("a:b:zz", "not an IPv4 or IPv6 address"),
    ],
)
def test_bad_specs_name_the_token(token, reason):
    assert usage_error(expand, token) == f"bad target spec '{token}': {reason}"


@pytest.mark.parametrize("token,want", [
    ("::1", ["::1"]), ("[::1]", ["::1"]), ("fe80::1%eth0", ["fe80::1%eth0"]),
    ("2001:2:0:0::0a", ["2001:2::a"]),
    ("2001:2::/126", ["2001:2::", "2001:2::1", "2001:2::2", "2001:2::3"]),
    ("2001:2::7/127", ["2001:2::6", "2001:2::7"]),  # host bits ignored, as for IPv4
])
def test_ipv6_literals_and_prefixes(token, want):
    assert expand(token) == want


def test_mixed_lists_and_exclusions_across_families():
    got = expand("198.18.0.1", "2001:2::/126", "198.18.0.1", "2001:2::1", exclude=["2001:2::2", "198.18.0.9"])
    assert got == ["198.18.0.1", "2001:2::", "2001:2::1", "2001:2::3"]
    assert expand("2001:2::/120", exclude=["2001:2::/121"]) == [f"2001:2::{i:x}" for i in range(128, 256)]


@pytest.mark.parametrize("token", ["2001:2::/64", "2001:2::/0", "2001:2::/103"])
def test_an_ipv6_sweep_too_big_to_enumerate_is_one_line(token):
    msg = usage_error(expand, token)
    bits = 128 - int(token.rsplit("/", 1)[1])
    assert msg.startswith(f"target spec '{token}' is an IPv6 /{token.rsplit('/', 1)[1]}: 2^{bits} addresses")
    assert "-PB" in msg


def test_the_largest_ipv6_sweep_counts_without_expanding():
    from hostprint.targets import count_targets

    assert count_targets(["2001:2::/104", "198.18.0.0/24"]) == (1 << 24) + 256


@pytest.mark.parametrize("token,reason", [
    ("2001:2::/129", "prefix '/129' is not /0-/128"),
    ("::ffff:198.18.0.1", "IPv4-mapped address: scan 198.18.0.1 instead"),
    ("fe80::1%et h0", None),
])
def test_bad_ipv6_specs(token, reason):
    if reason is None:  # whitespace splits the spec: the second half is not an address
        with pytest.raises(UsageError):
            expand(token)
        return
    assert usage_error(expand, token) == f"bad target spec '{token}': {reason}"


def test_names_resolve_to_ipv6_with_dash_6(monkeypatch):
    from hostprint import targets6

    def fake(name, port, family=0, *a, **kw):
        assert name == "web.lab.test"
        if family == socket.AF_INET6:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:2::10", 0, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.18.0.10", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    names: dict[str, str] = {}
    assert expand_targets(["web.lab.test"], names=names) == ["198.18.0.10"]
    targets6.set_family(6)
    try:
        names = {}
        assert expand_targets(["web.lab.test"], names=names) == ["2001:2::10"]
        assert names == {"2001:2::10": "web.lab.test"}
    finally:
        targets6.set_family(4)


def test_bad_exclude_names_the_token():
    assert usage_error(expand, "198.18.0.1", exclude=["198.18.0.256"]).startswith("bad target spec '198.18.0.256'")


def test_control_characters_stay_on_one_line():
    msg = usage_error(expand, "198.18.0.1\x1b[2J")
    assert "\\x1b" in msg


def test_split_target_list_keeps_octet_lists():
    assert split_target_list("198.18.0.1,3,5-7,host2 198.18.0.9,10.0.0.1") == [
        "198.18.0.1,3,5-7", "host2", "198.18.0.9", "10.0.0.1"]
    assert split_target_list("") == []


# ---- properties ---------------------------------------------------------------------

_octet_item = st.one_of(
    st.integers(0, 255).map(lambda n: (str(n), {n})),
    st.tuples(st.integers(0, 255), st.integers(0, 4)).map(
        lambda t: (f"{t[0]}-{min(t[0] + t[1], 255)}", set(range(t[0], min(t[0] + t[1], 255) + 1)))),
)
_octet = st.lists(_octet_item, min_size=1, max_size=3).map(
    lambda items: (",".join(i[0] for i in items), set().union(*(i[1] for i in items))))


@given(st.tuples(_octet, _octet, _octet, _octet))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_octet_specs_match_cartesian_product(octets):
    spec = ".".join(o[0] for o in octets)
    expected = [".".join(map(str, t)) for t in itertools.product(*(sorted(o[1]) for o in octets))]
    assert expand(spec) == expected


@given(st.integers(0, (1 << 32) - 1), st.integers(20, 32))
def test_cidr_matches_ipaddress(addr, prefix):
    spec = f"{ipaddress.IPv4Address(addr)}/{prefix}"
    assert expand(spec) == [str(a) for a in ipaddress.ip_network(spec, strict=False)]


@given(st.lists(st.integers(0, 63), max_size=40), st.lists(st.integers(0, 63), max_size=10))
def test_order_dedup_exclude_model(hosts, excluded):
    specs = [f"198.18.0.{h}" for h in hosts]
    got = expand(*specs, exclude=[f"198.18.0.{e}" for e in excluded])
    assert got == [s for s in dict.fromkeys(specs) if int(s.rsplit(".", 1)[1]) not in excluded]


@given(st.text(max_size=40))
@settings(max_examples=400)
def test_junk_never_raises_anything_but_usage_error(junk):
    got = parsed_or_one_line_error(expand, junk)
    if got is not None:
        assert all(isinstance(a, str) for a in got)


@given(st.text(alphabet="0123456789.,-*/", max_size=25))
@settings(max_examples=400)
def test_ipv4ish_junk_never_raises_anything_but_usage_error(junk):
    got = parsed_or_one_line_error(expand, junk, limit=1 << 16)
    if got is not None:
        assert all(socket.inet_aton(a) for a in got)


# ---- -iL files -------------------------------------------------------------------------


def test_plain_target_file_with_comments(tmp_path):
    f = tmp_path / "targets.txt"
    f.write_text("# lab hosts\n198.18.0.1 198.18.0.2,3  # trailing\n\n\t198.18.1.0/30\n")
    specs = read_target_file(str(f))
    assert specs == ["198.18.0.1", "198.18.0.2,3", "198.18.1.0/30"]
    assert len(expand(*specs)) == 7


def test_target_file_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("198.18.0.5\n198.18.0.6 # x\n"))
    assert read_target_file("-") == ["198.18.0.5", "198.18.0.6"]


def test_missing_target_file_names_path(tmp_path):
    path = str(tmp_path / "nope.txt")
    msg = usage_error(read_target_file, path)
    assert path in msg and "No such file" in msg


def test_binary_target_file(tmp_path):
    f = tmp_path / "bin"
    f.write_bytes(b"\xff\xfe\x00\x81junk")
    assert str(f) in usage_error(read_target_file, str(f))


GREPABLE = (
    "# Nmap 7.93 scan initiated as: nmap -oG - 198.18.0.0/29\n"
    "Host: 198.18.0.1 (gw.lab)\tStatus: Up\n"
    "Host: 198.18.0.1 (gw.lab)\tPorts: 22/open/tcp//ssh//OpenSSH 9.2p1 Debian 2 (protocol 2.0)/, "
    "53/open|filtered/udp//domain///, 80/closed/tcp//http///\tIgnored State: closed (997)\n"
    "Host: 198.18.0.2 ()\tStatus: Down\n"
    "Host: 198.18.0.3 ()\tStatus: Up\n"
    "# Nmap done\n"
)


def test_grepable_input(tmp_path):
    f = tmp_path / "scan.gnmap"
    f.write_text(GREPABLE)
    assert read_target_file(str(f)) == ["198.18.0.1", "198.18.0.3"]
    assert read_nmap_results(str(f)) == {
        "198.18.0.1": [(22, "tcp", "open", "ssh"), (53, "udp", "open|filtered", "domain"), (80, "tcp", "closed", "http")]}


def test_truncated_xml_names_path_and_line(tmp_path):
    f = tmp_path / "cut.xml"
    f.write_text('<?xml version="1.0"?>\n<nmaprun>\n<host><status state="up"/>\n<address addr="198.18.0.1"')
    msg = usage_error(read_target_file, str(f))
    assert str(f) in msg and "line 4" in msg
    assert "line 4" in usage_error(read_nmap_results, str(f))


def test_foreign_xml_and_plain_text_results(tmp_path):
    f = tmp_path / "other.xml"
    f.write_text("<html><body/></html>")
    assert "not nmap -oX output" in usage_error(read_target_file, str(f))
    g = tmp_path / "plain.txt"
    g.write_text("198.18.0.1\n")
    assert "neither nmap -oG nor -oX" in usage_error(read_nmap_results, str(g))


@given(st.binary(max_size=300))
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_junk_files_only_usage_error(tmp_path, data):
    f = tmp_path / "junk"
    for content in (data, b"<nmaprun>" + data, b"Host: 1 ()\tPorts: " + data):
        f.write_bytes(content)
        for reader in (read_target_file, read_nmap_results):
            parsed_or_one_line_error(reader, str(f))


# ---- real nmap output (loopback only) ----------------------------------------------------


def _named_free_port(kind: int) -> tuple[socket.socket, int]:
    """Bind a free loopback port that nmap-services names, so service names get checked."""
    for port in (8888, 5432, 9999, 1080, 3306, 6000, 8000, 8081, 5900, 2049):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
            return s, port
        except OSError:
            s.close()
    pytest.skip("no named loopback port free")


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap not installed (Debian package nmap)")
def test_real_nmap_output(tmp_path):
    listener, open_port = _named_free_port(socket.SOCK_STREAM)
    listener.listen()
    closed, closed_port = _named_free_port(socket.SOCK_STREAM)  # bound, not listening: RST
    gnmap, xml = tmp_path / "scan.gnmap", tmp_path / "scan.xml"
    try:
        subprocess.run(
            ["nmap", "-sT", "-Pn", "-n", "-p", f"{open_port},{closed_port}", "-oG", str(gnmap), "-oX", str(xml),
             "127.0.0.1"], check=True, capture_output=True, timeout=60)
    finally:
        listener.close()
        closed.close()
    expected = sorted([(open_port, "tcp", "open", service_name(open_port, "tcp") or ""),
                       (closed_port, "tcp", "closed", service_name(closed_port, "tcp") or "")])
    assert expected[0][3] and expected[1][3]  # named ports: the service column is really compared
    for f in (gnmap, xml):
        assert read_target_file(str(f)) == ["127.0.0.1"]
        got = read_nmap_results(str(f))
        assert list(got) == ["127.0.0.1"]
        assert sorted(got["127.0.0.1"]) == expected
