"""Application fingerprinting (issue 5): signature readers, matching, and the engine against real
Debian daemons in a lab. Expected products come from what the lab runs; expected versions come
from `dpkg-query -W` of the installed packages, never from constants here."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED, hostprint, needs_root
from hostprint.errors import UsageError
from hostprint.match.app import NULL, expand, match_answer, os_hint
from hostprint.signatures import amap as amap_db
from hostprint.signatures import app_db, nmap_probes

AMAP_DIR = os.path.join(SHARED, "datasets", "amap-5.4")
NMAP_FILE = "/usr/share/nmap/nmap-service-probes"


# ---------------------------------------------------------------------------- files and matching


def test_own_db_loads_clean_and_every_entry_cites_a_source():
    db = app_db.load()
    assert db.skipped == []
    assert len(db.triggers) >= 15 and len(db.rules) >= 60
    for f in app_db.db_files():
        comment = False
        for n, line in enumerate(f.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith("#"):
                comment = True
            elif not s:
                comment = False if not s else comment
            elif s.startswith(("trigger ", "match ")):
                assert comment, f"{f.name}:{n} has no comment block above it naming its source"


def test_own_db_rules_on_captured_bytes():
    db = app_db.load()

    def one(data: bytes, trig: str = NULL, proto: str = "tcp"):
        ms = [m for m in match_answer(db, data, trig, proto) if not m.soft]
        assert ms, data
        return max(ms, key=lambda m: m.score())

    m = one(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    assert (m.service, m.fields["product"], m.fields["version"]) == ("ssh", "OpenSSH", "9.2p1")
    assert "cpe:/a:openbsd:openssh:9.2p1" in m.cpe
    # MariaDB greeting as sent by mariadbd 10.11 (captured in the lab)
    m = one(b"d\x00\x00\x00\n5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x03\x00\x00\x00%=Cu")
    assert (m.service, m.fields["product"], m.fields["version"]) == ("mysql", "MariaDB", "10.11.19")
    m = one(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: x\r\n\r\n", "http")
    assert (m.service, m.fields["product"], m.fields["version"]) == ("http", "nginx", "1.22.1")
    m = one(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", "tls")
    assert m.service == "ssl"
    # the rule restricted to the http trigger must not fire on a banner
    assert not [x for x in match_answer(db, b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n", NULL, "tcp")
                if x.fields.get("product") == "nginx"]


def test_templates_and_os_hints():
    m = re.compile(rb"(\w+)-(\d+)\x00(..)").search(b"abc-12\x00\x01\x02")
    assert expand("$1 v$2", m) == "abc v12"
    assert expand('$SUBST(1,"b","B")', m) == "aBc"
    assert expand('$I(3,">")', m) == str(0x0102)
    assert expand("$P(3)", m) == ""
    h = os_hint("OpenSSH_9.2p1 Debian-2+deb12u3")
    assert (h.distribution, h.release, h.cpe) == ("Debian", "12", "cpe:/o:debian:debian_linux:12")
    assert os_hint("OpenSSH_8.9p1 Ubuntu-3ubuntu0.6").distribution == "Ubuntu"
    assert os_hint("httpd-2.4.57-5.el9").release == "9"
    assert os_hint("nginx/1.22.1") is None


def test_malformed_definition_lines_never_raise():
    bad = "\n".join(["trigger x tcp", "trigger x foo \"a\"", "match", "match x m|(|", "match x m|a|| z/q/",
                     'trigger y tcp "\\x4"', "bogus line", "match x trigger= m/a/ p/unterminated"])
    db = app_db.parse_text(bad)
    assert len(db.skipped) == 8 and not db.rules and not db.triggers
    db = amap_db.parse_resp("###V:9###\nx:::abc:(\nname::tcp::ok\n" + "y" * 2000 + ":::\n")
    assert len(db.rules) == 1 and len(db.skipped) == 2
    db = amap_db.parse_trig('a::tcp:2:"x"\nb::tcp:0:"\\q"\nc::zz:0:"x"\nd::tcp:0:0xZZ\n')
    assert not db.triggers and len(db.skipped) == 4


def test_amap_legacy_response_form():
    db = amap_db.parse_resp("ssh::tcp::^\"SSH-\"\nopenssh::tcp::/OpenSSH\nhexy:::: ^0x00 01\n")
    assert [r.service for r in db.rules] == ["ssh", "openssh", "hexy"]
    names = {m.service for m in match_answer(db, b"SSH-2.0-OpenSSH_9.2p1\r\n", NULL, "tcp")}
    assert names == {"ssh", "openssh"}
    assert not match_answer(db, b"xSSH-", NULL, "tcp") or {m.service for m in match_answer(db, b"xSSH-", NULL, "tcp")} == set()


@pytest.fixture(scope="module")
def amap54():
    if not os.path.isdir(AMAP_DIR):
        pytest.skip(f"amap 5.4 files not found at {AMAP_DIR}")
    return amap_db.load(AMAP_DIR)


def test_amap54_files_load_verbatim(amap54):
    assert len(amap54.triggers) == 30 and len(amap54.rules) == 346 and not amap54.skipped
    assert sum(t.harmful for t in amap54.triggers) == 19
    # amap's parser reads "26-50" with atoi: an exact-length rule (the reference notes' quirk)
    dw = [r for r in amap54.rules if r.service == "daytime-windows" and r.min_len == 26]
    assert dw and all(r.max_len == 26 for r in dw)
    assert amap54.rpc[100000] == "rpcbind"
    ids = {m.service for m in match_answer(amap54, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", NULL, "tcp")}
    assert {"ssh", "ssh-openssh"} <= ids


def test_nmap_probes_reader():
    text = ("Exclude T:9100\nProbe TCP NULL q||\ntotalwaitms 6000\n"
            "match ssh m|^SSH-([\\d.]+)-OpenSSH_([\\w._-]+)\\r?\\n| p/OpenSSH/ v/$2/ i/protocol $1/ cpe:/a:openbsd:openssh:$2/\n"
            "Probe TCP GetRequest q|GET / HTTP/1.0\\r\\n\\r\\n|\nrarity 1\nports 80\n"
            "softmatch http m|^HTTP/1\\.[01]|\nProbe UDP Rare q|\\x00|\nrarity 9\n")
    db = nmap_probes.parse_text(text)
    # every probe is kept (rarity is weighed per port against --version-intensity by the engine)
    assert [t.name for t in db.triggers] == ["NULL", "GetRequest", "Rare"] and not db.skipped
    assert db.triggers[1].payload == b"GET / HTTP/1.0\r\n\r\n" and 80 in db.triggers[1].ports
    assert (db.triggers[0].wait_ms, db.triggers[0].tcpwrapped_ms, db.triggers[2].rarity) == (6000, 2000, 9)
    assert ("tcp", 9100) in db.exclude and ("udp", 9100) not in db.exclude
    m = match_answer(db, b"SSH-2.0-OpenSSH_9.2p1\r\n", "GetRequest", "tcp")  # NULL is every TCP probe's fallback
    assert m and m[0].fields == {"product": "OpenSSH", "version": "9.2p1", "extrainfo": "protocol 2.0"}
    if os.path.isfile(NMAP_FILE):
        full = nmap_probes.load(NMAP_FILE)
        assert len(full.rules) > 5000 and len(full.skipped) < len(full.rules) // 100


def test_amap_input_files(tmp_path):
    from hostprint.commands.amap import parse_port_args, read_nmap_file

    g = tmp_path / "x.gnmap"
    g.write_text("# Nmap\nHost: 198.18.0.5 ()\tStatus: Up\nHost: 198.18.0.5 ()\tPorts: 22/open/tcp//ssh///, "
                 "23/closed/tcp//telnet///, 53/open|filtered/udp//domain///, 161/open/udp//snmp///\tIgnored State: closed (997)\n")
    assert read_nmap_file(str(g)) == [("198.18.0.5", 22, "tcp"), ("198.18.0.5", 161, "udp")]
    x = tmp_path / "x.xml"
    x.write_text('<?xml version="1.0"?><nmaprun><host><address addr="198.18.0.6" addrtype="ipv4"/><ports>'
                 '<port protocol="tcp" portid="80"><state state="open"/></port>'
                 '<port protocol="tcp" portid="81"><state state="closed"/></port></ports></host></nmaprun>')
    assert read_nmap_file(str(x)) == [("198.18.0.6", 80, "tcp")]
    assert parse_port_args(["22", "80,8000-8002"]) == [22, 80, 8000, 8001, 8002]
    for bad in (["0"], ["x"], ["5-2"], ["70000"]):
        with pytest.raises(UsageError, match=re.escape(bad[0])):
            parse_port_args(bad)


def test_amap_cli_bad_input_is_one_line():
    for args in (["198.18.0.1", "22", "-c", "999"], ["198.18.0.1"], ["198.18.0.1", "22", "-m"],
                 ["198.18.0.1", "22", "-D", "/nonexistent/x"], ["198.18.0.1", "22", "--sv-db", "foo"],
                 ["198.18.0.1", "22", "-p", "nosuchtrigger"]):
        r = subprocess.run([sys.executable, "-m", "hostprint", "amap", *args], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, args
    for args in (["--sv-timeout", "0"], ["--sv-timeout", "x"], ["--sv-db", "nmap,bogus"]):
        r = subprocess.run([sys.executable, "-m", "hostprint", "scan", "198.18.0.1", "-sV", *args], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 2 and args[1] in r.stderr and "Traceback" not in r.stderr, args


# ---------------------------------------------------------------------------- the lab

# kind:port on one host; what each should be identified as. Products are what the lab starts
# (lab/services.py); versions are checked against dpkg-query of PACKAGE.
TCP = {
    2222: ("ssh", "ssh", "OpenSSH", "openssh-server"),
    8081: ("nginx", "http", "nginx", "nginx-light"),
    2121: ("ftp", "ftp", "vsftpd", "vsftpd"),
    7379: ("redis", "redis", "Redis key-value store", "redis-server"),
    21211: ("memcached", "memcached", "Memcached", "memcached"),
    5353: ("dns", "domain", "dnsmasq", "dnsmasq-base"),
    13306: ("mysql", "mysql", "MariaDB", "mariadb-server"),
    10025: ("smtp", "smtp", "Exim smtpd", "exim4-daemon-light"),
    13128: ("squid", "http-proxy", "Squid http proxy", "squid"),
    10631: ("ipp", "ipp", "CUPS", "cups-daemon"),
    10143: ("imap", "imap", "Dovecot imapd", None),
    10110: ("pop3", "pop3", "Dovecot pop3d", None),
    15432: ("postgresql", "postgresql", "PostgreSQL DB", None),
    10389: ("ldap", "ldap", "OpenLDAP", None),
    11883: ("mqtt", "mqtt", "Mosquitto", "mosquitto"),
    10873: ("rsync", "rsync", "rsync", None),
    14369: ("epmd", "epmd", "Erlang Port Mapper Daemon", None),
    10023: ("telnet", "telnet", None, None),
    7443: ("tls-redis", "redis", "Redis key-value store", "redis-server"),
    9443: ("tls-http", "http", "nginx", "nginx-light"),
    12379: ("etcd", "etcd", "etcd", "etcd-server"),
    6005: ("x11", "X11", None, None),
    25672: ("erlang", "erlang-dist", "Erlang Distribution Node", None),
    15900: ("vnc", "vnc", None, None),
    10445: ("smb", "microsoft-ds", "Samba smbd", None),
}
UDP = {10161: ("snmp", "snmp", "net-snmp"), 10123: ("ntp", "ntp", None), 10069: ("tftp", "tftp", None),
       5353: ("dns", "domain", "dnsmasq")}
SPECIAL = {111: "rpcbind", 5555: "tcp-listen", 5556: "tcp-close", 9001: "hostile-endless", 9002: "hostile-big",
           9003: "hostile-tarpit", 9004: "hostile-tlsgarbage"}
ADDR = "198.18.0.30"
NEEDED = ["stunnel4", "memcached", "mosquitto", "dnsmasq", "dovecot", "mariadbd", "exim4", "squid", "slapd",
          "rsync", "epmd", "snmpd", "chronyd", "in.tftpd", "telnetd", "cupsd", "openssl", "rpcbind", "etcd", "Xvfb", "erl", "Xvnc", "smbd"]


def lab_services() -> list[str]:
    out = {f"{k}:{p}" for p, (k, *_r) in TCP.items()} | {f"{k}:{p}" for p, (k, *_r) in UDP.items()}
    out |= {f"{k}:{p}" for p, k in SPECIAL.items()}
    if not Path("/usr/lib/postgresql").is_dir():
        out.discard("postgresql:15432")
    return sorted(out)


@pytest.fixture(scope="module")
def applab():
    needs_root()
    missing = [b for b in NEEDED if not shutil.which(b) and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        pytest.skip(f"lab daemons not installed (run scripts/setup.sh): {', '.join(missing)}")
    from hostprint.lab import HostSpec, Lab, LabSpec

    spec = LabSpec(name=f"ap{os.getpid() % 10000}", hosts=[HostSpec(name="v1", address=ADDR, services=lab_services())])
    # strict=False: a daemon that cannot start (a config a new package version rejects) fails the
    # tests that need it, with the lab's message; the other daemons' tests still run.
    with Lab(spec, daemon_timeout=40, strict=False) as lab:
        yield lab


def upstream_version(pkg: str) -> str:
    """'1:9.2p1-2+deb12u3' -> '9.2p1' (Debian policy 5.6.12: [epoch:]upstream[-revision])."""
    v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True).stdout.strip()
    assert v, f"{pkg} not installed"
    v = v.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def debian_revision(pkg: str) -> str:
    v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True).stdout.strip()
    return v.rsplit("-", 1)[-1]


def version_ok(reported: str | None, upstream: str) -> bool:
    """A server may reveal fewer components than the package has (CUPS says 2.4 for 2.4.2)."""
    return bool(reported) and (reported == upstream or upstream.startswith(reported + "."))


@pytest.fixture(scope="module")
def sv(applab):
    tcp = ",".join(str(p) for p in [*TCP, *SPECIAL])
    udp = ",".join(str(p) for p in UDP)
    r = hostprint(applab, "scan", ADDR, "-sS", "-sU", "-sV", "-p", f"T:{tcp},U:{udp}", "-n", "--no-db",
                  "--progress", "never", "-oJ", "-", timeout=200)
    host = json.loads(r.stdout.splitlines()[0])
    return {(p["port"], p["protocol"]): p for p in host["ports"]}, host


def _tcp_params():
    return [pytest.param(port, marks=pytest.mark.daemons(f"{TCP[port][0]}:{port}"), id=f"{TCP[port][0]}:{port}")
            for port in sorted(TCP)]


@pytest.mark.lab
@pytest.mark.parametrize("port", _tcp_params())
def test_sv_identifies_lab_tcp_daemon_and_version(sv, port):
    kind, name, product, pkg = TCP[port]
    if kind == "postgresql" and not Path("/usr/lib/postgresql").is_dir():
        pytest.skip("postgresql not installed")
    ports, _host = sv
    svc = ports[(port, "tcp")]["service"] or {}
    assert (svc.get("name"), svc.get("product")) == (name, product if product else svc.get("product")), svc
    if pkg:
        assert version_ok(svc.get("version"), upstream_version(pkg)), (svc.get("version"), upstream_version(pkg))


@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{UDP[p][0]}:{p}"), id=f"{UDP[p][0]}:{p}")
                                  for p in sorted(UDP)])
def test_sv_identifies_lab_udp_daemon(sv, port):
    kind, name, product = UDP[port]
    ports, _host = sv
    p = ports[(port, "udp")]
    svc = p["service"] or {}
    assert p["state"] == "open" and svc.get("name") == name and (not product or svc.get("product") == product), p


@pytest.mark.lab
@pytest.mark.daemons("tls-redis:7443", "tls-http:9443", "ssh:2222", "rpcbind:111", "nginx:8081")
def test_sv_methods_tunnels_and_rpc(sv):
    ports, _host = sv
    assert ports[(7443, "tcp")]["service"]["tunnel"] == "ssl" and ports[(9443, "tcp")]["service"]["tunnel"] == "ssl"
    assert ports[(2222, "tcp")]["service"]["method"] == "banner"
    # the RPC pass: rpcbind is program 100000 and reports its version range (RFC 5531 PROG_MISMATCH)
    rpc = ports[(111, "tcp")]["service"]
    assert rpc["name"] == "rpcbind" and rpc["extrainfo"] == "RPC #100000" and re.fullmatch(r"\d+-\d+", rpc["version"])
    assert ports[(8081, "tcp")]["service"]["method"] == "trigger"


@pytest.mark.lab
@pytest.mark.daemons("ssh:2222")
def test_sv_os_hint_from_package_suffix(sv):
    ports, host = sv
    m = re.search(r"deb(\d+)u\d+", debian_revision("openssh-server"))
    if not m:
        pytest.skip("openssh-server here carries no +debNNuM suffix")
    ssh = ports[(2222, "tcp")]["service"]
    assert ssh["ostype"] == "Linux" and f"cpe:/o:debian:debian_linux:{m.group(1)}" in ssh["cpe"]
    hints = host["os"]["hints"]
    assert any(h["distribution"] == "Debian" and h["release"] == m.group(1) and h["source"].startswith("2222/tcp")
               for h in hints)


@pytest.mark.lab
@pytest.mark.daemons("tls-redis:7443", "tls-http:9443")
def test_sv_tls_facts_match_the_lab_certificate(sv, applab):
    import hashlib

    ports, _ = sv
    pem = (applab.tmpdir / "tls" / "lab.crt").read_text()
    fp = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    for port in (7443, 9443):
        t = ports[(port, "tcp")]["service"]["tls"]
        assert t["version"].startswith("TLS") and t["cipher"]
        assert t["cert"]["sha256"] == fp
        assert "CN=hostprint-lab" in t["cert"]["subject"] and t["cert"]["self_signed"]
        assert "lab.hostprint.test" in t["cert"]["sans"]


@pytest.mark.lab
@pytest.mark.daemons("tcp-listen", "tcp-close", "hostile-endless", "hostile-big", "hostile-tarpit", "hostile-tlsgarbage")
def test_sv_silent_closing_and_hostile_ports(sv, applab):
    ports, _ = sv
    assert ports[(5556, "tcp")]["service"]["name"] == "tcpwrapped"
    for p in (5555, 9001, 9002, 9003):
        svc = ports[(p, "tcp")]["service"]
        assert svc is None or svc["method"] == "port-table" or svc["name"] != "ssl", (p, svc)
    g = ports[(9004, "tcp")]["service"]
    assert g["name"] == "ssl" and g["tls"] and "error" in g["tls"]
    # bounded reads: run the engine on the hostile ports and report the largest answer kept
    code = ("import asyncio,sys,resource; from hostprint.probes import app; from hostprint.signatures import app_db\n"
            f"r=asyncio.run(app.Engine(app.AppOptions(app_db.load(), connect_timeout=2,response_timeout=2,"
            f"banner_timeout=2)).scan([('{ADDR}',p,'tcp') for p in (9001,9002,9003,9004)]))\n"
            "print(max(len(x.data) for rep in r for x in rep.responses), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = applab.exec(applab.scanner_ns, [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                      cwd=ROOT)
    assert out.returncode == 0, out.stderr
    biggest, rss_kb = map(int, out.stdout.split())
    assert 0 < biggest <= app_default_cap()
    assert rss_kb < 200 * 1024


def app_default_cap() -> int:
    from hostprint.probes.app import AppOptions

    return AppOptions(None).max_bytes  # type: ignore[arg-type]


def amap_cmd(lab, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "amap", *args], capture_output=True,
                    text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.lab
@pytest.mark.daemons("ssh", "nginx", "ftp", "smtp", "imap", "pop3")
def test_amap54_shipped_files_identify_lab_services(applab, tmp_path, amap54):
    ports = {2222: "ssh-openssh", 8081: "http", 2121: "ftp", 10025: "smtp", 10143: "imap", 10110: "pop3"}
    log = tmp_path / "amap.log"
    r = amap_cmd(applab, ADDR, *map(str, ports), "-D", AMAP_DIR, "-T", "3", "-t", "3", "-o", str(log), "-m")
    assert r.returncode == 0, r.stderr
    rows = [ln.split(":") for ln in log.read_text().splitlines() if not ln.startswith("#")]
    ids = {(int(f[1]), f[5]) for f in rows}
    for port, ident in ports.items():
        assert (port, ident) in ids, (port, ident, r.stdout)
    assert all(f[0] == ADDR and f[2] == "tcp" and f[3] == "open" for f in rows)


@pytest.mark.lab
@pytest.mark.daemons("ssh", "tcp-close", "hostile-endless", "rpcbind", "tls-redis")
def test_amap_modes_and_unrecognised_suggestions(applab):
    r = amap_cmd(applab, ADDR, "2222", "5556", "-B")
    assert "Banner on %s:2222/tcp : SSH-2.0-OpenSSH" % ADDR in r.stdout
    r = amap_cmd(applab, ADDR, "2222", "1", "-P")
    assert f"Port on {ADDR}:2222/tcp is OPEN" in r.stdout and f"Port on {ADDR}:1/tcp is CLOSED" in r.stdout
    # the endless banner is nobody's protocol: dumped with ready-to-paste rules (amapcrap's idea)
    r = amap_cmd(applab, ADDR, "9001", "-T", "2", "-t", "2", "-1")
    # one block for the banner and every trigger that drew the same bytes (issue 14: merged)
    assert r.stdout.count(f"Unrecognized response from {ADDR}:9001/tcp (by banner") == 1
    assert "match SERVICE m|^220 hostile endless" in r.stdout
    r = amap_cmd(applab, ADDR, "9001", "-T", "2", "-t", "2", "-U")
    assert "Unrecognized" not in r.stdout and f"Unidentified ports: {ADDR}:9001/tcp (total 1)." in r.stdout
    r = amap_cmd(applab, ADDR, "111", "-u", "-T", "2", "-t", "2", "-1", "-D", AMAP_DIR) if os.path.isdir(AMAP_DIR) \
        else amap_cmd(applab, ADDR, "111", "-u", "-T", "2", "-t", "2", "-1")
    assert re.search(rf"Protocol on {ADDR}:111/udp matches rpc-rpcbind-v\d+ \(RPC #100000", r.stdout), r.stdout
    r = amap_cmd(applab, ADDR, "111", "-T", "2", "-t", "2", "-1", "-R")
    assert "matches rpc" in r.stdout and "rpc-rpcbind" not in r.stdout
    r = amap_cmd(applab, ADDR, "7443", "-T", "2", "-t", "2", "-1", "-S")
    assert "matches ssl" in r.stdout and "over SSL" not in r.stdout


@pytest.mark.lab
@pytest.mark.daemons("ssh", "nginx:8081")
def test_sv_db_nmap_reads_installed_probes(applab):
    if not os.path.isfile(NMAP_FILE):
        pytest.skip("nmap-service-probes not installed")
    r = hostprint(applab, "scan", ADDR, "-sT", "-Pn", "-sV", "--sv-db", "nmap", "-p", "2222,8081", "-n", "--no-db",
                  "--progress", "never", "-oJ", "-", timeout=120)
    ports = {p["port"]: p["service"] for p in json.loads(r.stdout.splitlines()[0])["ports"]}
    assert ports[2222]["product"] == "OpenSSH" and version_ok(ports[2222]["version"].split()[0],
                                                             upstream_version("openssh-server"))
    assert ports[8081]["product"] == "nginx"


def _make_cert(tmp_path: Path, key: str) -> bytes:
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", key, "-nodes", "-days", "3", "-subj", "/C=DE/O=Lab, Inc/CN=x.test",
                    "-addext", "subjectAltName=DNS:a.test,IP:198.18.0.9,IP:2001:db8::1", "-keyout", str(tmp_path / "k"),
                    "-out", str(tmp_path / "c")], check=True, capture_output=True)
    return ssl.PEM_cert_to_DER_cert((tmp_path / "c").read_text())


def test_x509_fields_agree_with_openssl(tmp_path):
    from hostprint.match.x509 import cert_facts

    for key in ("rsa:2048", "ed25519"):
        der = _make_cert(tmp_path, key)
        f = cert_facts(der).to_dict()  # the JSON keys of hostprint 0.1's reader are kept
        assert "error" not in f, f
        assert f["subject"] == "CN=x.test,O=Lab\\, Inc,C=DE" and f["issuer"] == f["subject"] and f["self_signed"]
        assert f["sans"] == ["a.test", "198.18.0.9", "2001:db8::1"]
        assert f["key"] == {"rsa:2048": "RSA", "ed25519": "Ed25519"}[key]
        txt = subprocess.run(["openssl", "x509", "-noout", "-serial", "-enddate", "-inform", "DER"], input=der,
                             capture_output=True, check=True).stdout.decode()
        assert f["serial"] == txt.split("serial=")[1].split()[0].lower().lstrip("0")
        end = txt.split("notAfter=")[1].strip()  # e.g. "Nov 26 05:03:15 2026 GMT"
        from datetime import datetime, timezone

        assert f["not_after"] == datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc).isoformat()


def test_x509_never_raises_on_garbage(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hostprint.match.x509 import cert_facts

    der = _make_cert(tmp_path, "ed25519")

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, len(der)), st.integers(0, len(der) - 1), st.integers(0, 255))
    def check(cut: int, pos: int, val: int) -> None:
        b = bytearray(der)
        b[pos] = val
        f = cert_facts(bytes(b[:cut]))
        assert len(f.sha256) == 64

    check()


@pytest.mark.lab
@pytest.mark.daemons("ssh", "tls-redis")
def test_sv_nmap_xml_service_elements(applab):
    import xml.etree.ElementTree as ET

    r = hostprint(applab, "scan", ADDR, "-sT", "-Pn", "-sV", "-p", "2222,7443", "-n", "--no-db", "--progress", "never",
                  "-oX", "-", timeout=120)
    svc = {int(p.get("portid")): p.find("service") for p in ET.fromstring(r.stdout).iter("port")}
    assert svc[7443].get("name") == "redis" and svc[7443].get("tunnel") == "ssl" and svc[7443].get("method") == "probed"
    assert svc[2222].get("product") == "OpenSSH" and svc[2222].get("version") == upstream_version("openssh-server")
    assert "cpe:/a:openbsd:openssh:" + upstream_version("openssh-server") in [c.text for c in svc[2222].iter("cpe")]


# Answers built from the protocol specifications (no daemon for these in Debian 12 or the lab):
# they check that each rule's regex and templates do what its comment says.
SPEC_ANSWERS = [
    ("amqp", b"\x01\x00\x00\x00\x00\x01\x00\x00\x0a\x00\x0a\x00\x09\x00\x00\x01\x00\x07productS\x00\x00\x00\x08RabbitMQ"
             b"\x07versionS\x00\x00\x00\x063.12.1", "amqp", {"product": "RabbitMQ", "version": "3.12.1"}),
    ("kafka", b"\x00\x00\x00\x0ahprp\x00\x23\x00\x00\x00\x00", "kafka", {"product": "Apache Kafka"}),
    ("cassandra", b"\x84\x00\x00\x00\x06\x00\x00\x00\x30\x00\x02\x00\x0bCQL_VERSION\x00\x01\x00\x053.4.5", "cassandra",
     {"product": "Apache Cassandra", "extrainfo": "CQL 3.4.5"}),
    ("mongodb", b"\x50\x00\x00\x00\x01\x00\x00\x00prph\x01\x00\x00\x00" + b"\x00" * 20 + b"\x08ismaster\x00\x01"
                b"\x10maxWireVersion\x00\x11\x00\x00\x00\x00", "mongodb", {"product": "MongoDB"}),
    (NULL, b"RFB 003.008\n", "vnc", {"extrainfo": "protocol 003.008"}),
    ("sip", b"SIP/2.0 200 OK\r\nVia: x\r\nServer: Asterisk PBX 18.0\r\n\r\n", "sip", {"product": "Asterisk", "version": "18.0"}),
    ("rtsp", b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: GStreamer RTSP server\r\n\r\n", "rtsp",
     {"product": "GStreamer RTSP server"}),
    ("xmpp", b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
             b" id='1' from='hp' version='1.0'>", "xmpp", {}),
    ("irc", b":irc.example.net NOTICE * :*** Looking up your hostname...\r\n:irc.example.net 451 hp :Register first\r\n",
     "irc", {"hostname": "irc.example.net"}),
    ("zookeeper", b"Zookeeper version: 3.8.1-74db005175a4ec545697012f9069cb9dcc8cdda7, built on 2023\n", "zookeeper",
     {"product": "Zookeeper", "version": "3.8.1"}),
    ("socks5", b"\x05\x00", "socks5", {}),
    ("oracle-tns", b"\x00\x50\x00\x00\x04\x00\x00\x00\x00\x00\x00\x46(DESCRIPTION=(TMP=)(VSNNUM=318767104)(ERR=0)"
                   b"(ALIAS=LISTENER))TNSLSNR for Linux: Version 19.0.0.0.0 - Production", "oracle-tns",
     {"product": "Oracle TNS listener", "version": "19.0.0.0.0", "ostype": "Linux"}),
    ("smb2", b"\x00\x00\x01\x00\xfeSMB@\x00" + bytes(58) + b"A\x00" + bytes(60) + b"NTLMSSP\x00\x02\x00\x00\x00" + bytes(36)
             + b"\x0a\x00\x61\x4a\x00\x00\x00\x0f", "microsoft-ds",
     {"product": "Microsoft Windows SMB", "extrainfo": "NTLMSSP Windows 10.0 build 19041", "ostype": "Windows"}),
    ("http-version", b'HTTP/1.1 200 OK\r\n\r\n{"major": "1", "minor": "28", "gitVersion": "v1.28.2", "platform": "linux/amd64"}',
     "kubernetes", {"product": "Kubernetes API server", "version": "1.28.2"}),
]


@pytest.mark.parametrize("trigger,data,service,fields", SPEC_ANSWERS, ids=[a[2] for a in SPEC_ANSWERS])
def test_rules_on_spec_built_answers(trigger, data, service, fields):
    ms = [m for m in match_answer(app_db.load(), data, trigger, "tcp") if not m.soft and m.service == service]
    assert ms, (service, [m.service for m in match_answer(app_db.load(), data, trigger, "tcp")])
    best_ = max(ms, key=lambda m: m.score())
    assert {k: best_.fields.get(k) for k in fields} == fields


def test_http_title_goes_into_extrainfo():
    from hostprint.probes.app import NULL as _N
    from hostprint.probes.app import PortReport, Response

    rep = PortReport("198.18.0.1", 8000, "tcp")
    data = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n<html><head><TITLE>\n Lab  page </TITLE></head>"
    rep.responses.append(Response("http", data))
    rep.matches = [(m, False) for m in match_answer(app_db.load(), data, "http", "tcp")[:1]]
    svc = rep.service()
    assert (svc.product, svc.version, svc.extrainfo) == ("nginx", "1.22.1", "title: Lab page")
    assert _N == NULL
