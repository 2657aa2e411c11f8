"""Names (issue 14): reverse DNS by default through the lab's own DNS server (dnsmasq in a
namespace, PTR records for every lab host), user-typed names kept beside PTR names in every output,
-n / -R / --dns-servers, -sL, and targets that do not resolve or route being warnings, not errors.

The scanner namespace's resolver is the lab's DNS server (/etc/netns/<ns>/resolv.conf, mounted
by `ip netns exec`): no query leaves the lab.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from conftest import hostprint, needs_root

pytestmark = pytest.mark.lab

WEB, DB, NS, NOBODY = "198.18.0.80", "198.18.0.81", "198.18.0.53", "198.18.0.89"


@pytest.fixture(scope="module")
def nameslab():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec

    spec = LabSpec(name=f"n{os.getpid() % 100000}", hosts=[
        HostSpec(name="web", address=WEB, services=["tcp-listen:80"], firewall=["ip saddr 198.18.0.1 counter"]),
        HostSpec(name="db", address=DB, services=["tcp-listen:5432"]),
        HostSpec(name="ns", address=NS, services=["dns:53"]),
    ])
    with Lab(spec) as lab:
        yield lab


def _counter(lab) -> int:
    out = lab.exec("web", ["nft", "list", "table", "inet", "hostprint_fw"], capture_output=True, text=True).stdout
    return int(out.split("counter packets ")[1].split()[0])


def _json(r) -> dict[str, dict]:
    return {d["address"]: d for d in map(json.loads, r.stdout.splitlines()) if d}


@pytest.mark.daemons("dns")
def test_reverse_dns_by_default_and_user_names_kept(nameslab, tmp_path):
    web_name = f"web.{nameslab.domain}"
    xml, normal, gnmap = tmp_path / "s.xml", tmp_path / "s.nmap", tmp_path / "s.gnmap"
    r = hostprint(nameslab, "scan", "-sS", "-p", "80,5432", web_name, DB, "-oX", str(xml), "-oN", str(normal),
                  "-oG", str(gnmap), "-oJ", "-", "--no-db", "--progress", "never")
    hosts = _json(r)
    assert hosts[WEB]["hostname"] == web_name
    assert hosts[WEB]["hostnames"] == [{"name": web_name, "type": "user"}, {"name": web_name, "type": "PTR"}]
    assert hosts[DB]["hostnames"] == [{"name": f"db.{nameslab.domain}", "type": "PTR"}]
    root = ET.parse(xml).getroot()
    names = {h.find("address").get("addr"): [(n.get("name"), n.get("type")) for n in h.iter("hostname")]
             for h in root.iter("host")}
    assert names[WEB] == [(web_name, "user"), (web_name, "PTR")] and names[DB] == [(f"db.{nameslab.domain}", "PTR")]
    text = normal.read_text()
    assert f"Nmap scan report for {web_name} ({WEB})" in text and f"Nmap scan report for db.{nameslab.domain} ({DB})" in text
    assert f"Host: {WEB} ({web_name})\tStatus: Up" in gnmap.read_text()
    v = nameslab.exec(nameslab.scanner_ns, ["xmllint", "--noout", "--dtdvalid", "/usr/share/nmap/nmap.dtd", str(xml)],
                      capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


@pytest.mark.daemons("dns")
def test_no_dns_and_explicit_servers(nameslab):
    plain = _json(hostprint(nameslab, "scan", "-sS", "-p", "80", "-n", WEB, "-oJ", "-", "--no-db", "--progress", "never"))
    assert plain[WEB]["hostname"] is None and "hostnames" not in plain[WEB]
    via = _json(hostprint(nameslab, "scan", "-sS", "-p", "80", "--dns-servers", NS, WEB, "-oJ", "-", "--no-db",
                          "--progress", "never"))
    assert via[WEB]["hostname"] == f"web.{nameslab.domain}"
    # -R: every target, also the ones that are down
    allr = _json(hostprint(nameslab, "scan", "-sS", "-p", "80", "-R", "-PE", WEB, NOBODY, "-oJ", "-", "--no-db",
                           "--progress", "never"))
    assert allr[NOBODY]["status"] == "down" and allr[WEB]["hostname"] == f"web.{nameslab.domain}"


@pytest.mark.daemons("dns")
def test_list_scan_resolves_and_sends_nothing(nameslab):
    before = _counter(nameslab)
    r = hostprint(nameslab, "scan", "-sL", f"{WEB[:-2]}80-81", "--no-db")
    assert _counter(nameslab) == before  # not one packet reached the target
    lines = r.stdout.splitlines()
    assert f"Nmap scan report for web.{nameslab.domain} ({WEB})" in lines
    assert f"Nmap scan report for db.{nameslab.domain} ({DB})" in lines
    assert lines[-1].startswith("hostprint done: 2 IP addresses (0 hosts up)")


@pytest.mark.daemons("dns")
def test_unresolvable_name_is_a_warning_and_the_run_goes_on(nameslab):
    r = hostprint(nameslab, "scan", "-sS", "-p", "80", f"nosuch.{nameslab.domain}", WEB, "--no-db", "--progress",
                  "never")
    assert f'Failed to resolve "nosuch.{nameslab.domain}"' in r.stderr and "warning" in r.stderr
    assert f"Nmap scan report for web.{nameslab.domain} ({WEB})" in r.stdout
    only_bad = hostprint(nameslab, "scan", "-sS", "-p", "80", f"nosuch.{nameslab.domain}", "--no-db", check=False)
    assert only_bad.returncode == 2 and "no target left" in only_bad.stderr
