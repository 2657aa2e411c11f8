"""Modern fingerprints on the lab's real daemons, each checked against a second source:

* JARM against pyjarm (PyPI, a second implementation) scanning the same port;
* JA3S against the ServerHello parsed by scapy's TLS layer;
* TLS version, cipher and ALPN against `openssl s_client`; the certificate against `openssl x509`
  of the file the daemon serves;
* SSH host keys against `ssh-keyscan` + `ssh-keygen -l`; the KEXINIT lists against `sshd -T` of the
  daemon's own config;
* version ranges against the installed packages (`dpkg-query`, never a constant here);
* the XML against nmap's DTD; `hostprint diff` against a certificate swapped between two runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_app import upstream_version

from conftest import hostprint, needs_root

ADDR = "198.18.0.41"
TLS = {18445: "nginx-tls", 18446: "tls13-only", 18447: "tls12-only", 18443: "tls-http", 18444: "apache-tls"}
SSH = {10022: "ssh", 12223: "ssh-kex"}
# port: (kind, package whose installed version the range must contain)
RANGES = {10022: ("ssh", "openssh-server"), 10445: ("smb", "samba"), 10389: ("ldap", "slapd"),
          10143: ("imap", "dovecot-core"), 15432: ("postgresql", None)}
SWAP_PORT = 18500  # our own openssl s_server, restarted with another certificate between two runs


def _pg_package() -> str:
    from hostprint.lab.services import _pg_package as pg

    return pg()[0]


@pytest.fixture(scope="module")
def mflab():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec
    from hostprint.lab.daemoncheck import package_version
    from hostprint.lab.services import REGISTRY

    services = [f"{k}:{p}" for p, k in {**TLS, **SSH}.items()] + [f"{k}:{p}" for p, (k, _pkg) in RANGES.items()
                                                                   if p not in SSH]
    missing = sorted({pkg for s in services for pkg in REGISTRY[s.split(":")[0]].packages if not package_version(pkg)})
    if missing:
        pytest.skip(f"lab daemons not installed (run scripts/setup.sh): {', '.join(missing)}")
    spec = LabSpec(name=f"mf{os.getpid() % 10000}", hosts=[HostSpec(name="m1", address=ADDR, services=sorted(services))])
    with Lab(spec, daemon_timeout=90, strict=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def scan(mflab, tmp_path_factory):
    d = tmp_path_factory.mktemp("mfscan")
    ports = ",".join(str(p) for p in sorted({*TLS, *SSH, *RANGES}))
    r = hostprint(mflab, "scan", ADDR, "-sT", "-sV", "-p", ports, "-n", "--no-db", "--progress", "never",
                  "-oJ", "-", "-oX", str(d / "scan.xml"), timeout=300)
    host = json.loads(r.stdout.splitlines()[0])
    return {p["port"]: p for p in host["ports"]}, d / "scan.xml"


def _svc(scan, port: int) -> dict:
    return scan[0][port]["service"] or {}


def _in_ns(lab, code: str) -> str:
    r = lab.exec(lab.scanner_ns, [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                 env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# ---------------------------------------------------------------------------- TLS

@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{k}:{p}"), id=f"{k}:{p}")
                                  for p, k in sorted(TLS.items())])
def test_jarm_equals_pyjarm(mflab, scan, port):
    pytest.importorskip("jarm")
    tls = _svc(scan, port).get("tls") or {}
    theirs = _in_ns(mflab, f"from jarm.scanner.scanner import Scanner; print(Scanner.scan({ADDR!r}, {port}, timeout=5)[0])")
    assert tls.get("jarm") == theirs and theirs != "0" * 62, (tls.get("jarm_raw"), theirs)


@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{k}:{p}"), id=f"{k}:{p}")
                                  for p, k in sorted(TLS.items())])
def test_ja3s_equals_scapys_reading_of_the_server_hello(mflab, scan, port):
    pytest.importorskip("scapy")
    code = (
        "import asyncio, hashlib\n"
        "from hostprint.probes.tls_probes import first_flight, ja3s_hello\n"
        "from scapy.all import load_layer\nload_layer('tls')\n"
        "from scapy.layers.tls.record import TLS\nfrom scapy.layers.tls.handshake import TLSServerHello\n"
        f"data = asyncio.run(first_flight({ADDR!r}, {port}, ja3s_hello(None), 5))\n"
        "sh = TLS(data).getlayer(TLSServerHello)\n"
        "s = f\"{sh.version},{sh.cipher},{'-'.join(str(e.type) for e in (sh.ext or []))}\"\n"
        "print(hashlib.md5(s.encode()).hexdigest(), s)\n")
    ja3s, s = _in_ns(mflab, code).split()
    tls = _svc(scan, port)["tls"]
    assert (tls["ja3s"], tls["ja3s_string"]) == (ja3s, s)
    assert tls["ja3s"] == hashlib.md5(tls["ja3s_string"].encode()).hexdigest()


@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{k}:{p}"), id=f"{k}:{p}")
                                  for p, k in sorted(TLS.items())])
def test_tls_version_cipher_alpn_and_certificate_agree_with_openssl(mflab, scan, port):
    tls = _svc(scan, port)["tls"]
    # the same cipher preference as hostprint's client context (probes/app.py): same choice
    r = mflab.exec(mflab.scanner_ns, ["openssl", "s_client", "-connect", f"{ADDR}:{port}", "-alpn", "h2,http/1.1",
                                      "-cipher", "ALL:@SECLEVEL=0"],
                   input="", capture_output=True, text=True, timeout=60)
    out = r.stdout
    m = re.search(r"^New, (\S+), Cipher is (\S+)$", out, re.M)
    assert m, out[-2000:]
    assert (tls["version"], tls["cipher"]) == m.groups()
    alpn = re.search(r"ALPN protocol: (\S+)", out)
    assert tls["alpn"] == (alpn.group(1) if alpn else None)
    crt = mflab.tmpdir / "tls" / "lab.crt"  # the certificate every lab TLS daemon serves
    fp = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-fingerprint", "-sha256", "-subject",
                         "-nameopt", "RFC2253", "-enddate"], capture_output=True, text=True, check=True).stdout
    cert = tls["cert"]
    assert cert["sha256"] == re.search(r"=([0-9A-F:]+)", fp).group(1).replace(":", "").lower()
    assert cert["subject"] == re.search(r"subject=(.+)", fp).group(1)
    assert cert["self_signed"] is True and cert["expired"] is False and cert["key_bits"] == 2048
    assert "lab.hostprint.test" in cert["sans"] and "198.18.0.99" in cert["sans"]


@pytest.mark.lab
@pytest.mark.daemons("tls13-only:18446", "tls12-only:18447")
def test_tls13_only_and_tls12_only_differ_where_they_must(scan):
    t13, t12 = _svc(scan, 18446)["tls"], _svc(scan, 18447)["tls"]
    assert t13["version"] == "TLSv1.3" and t12["version"] == "TLSv1.2"
    assert "43" in t13["ja3s_string"].split(",")[2].split("-")  # supported_versions: TLS 1.3 chosen
    assert "43" not in t12["ja3s_string"].split(",")[2].split("-")
    assert t13["jarm"][:30] != t12["jarm"][:30]


# ---------------------------------------------------------------------------- SSH

@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{k}:{p}"), id=f"{k}:{p}")
                                  for p, k in sorted(SSH.items())])
def test_ssh_host_keys_equal_ssh_keyscan(mflab, scan, port):
    ssh = _svc(scan, port)["ssh"]
    ks = mflab.exec(mflab.scanner_ns, ["ssh-keyscan", "-p", str(port), ADDR], capture_output=True, text=True,
                    timeout=60).stdout
    fps = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=ks, capture_output=True, text=True).stdout
    theirs = {(int(ln.split()[0]), ln.split()[1]) for ln in fps.splitlines() if ln.strip()}
    ours = {(k["bits"], k["sha256"]) for k in ssh["host_keys"]}
    assert ours == theirs and ours
    for k in ssh["host_keys"]:  # nmap's MD5 form is the MD5 of the same blob
        import base64

        assert k["md5"] == hashlib.md5(base64.b64decode(k["key"])).hexdigest()


@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{k}:{p}"), id=f"{k}:{p}")
                                  for p, k in sorted(SSH.items())])
def test_kexinit_lists_and_hassh_agree_with_sshd_t(mflab, scan, port):
    ssh = _svc(scan, port)["ssh"]
    conf = mflab.tmpdir / "m1" / f"{SSH[port]}-{port}" / "sshd_config"
    t = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(conf)], capture_output=True, text=True, check=True).stdout
    cfg = dict(ln.split(" ", 1) for ln in t.splitlines() if " " in ln)
    pseudo = re.compile(r"^(kex-strict-[cs]-v00@openssh\.com|ext-info-[cs])$")
    assert [k for k in ssh["kex"] if not pseudo.match(k)] == cfg["kexalgorithms"].split(",")
    assert ssh["ciphers"] == cfg["ciphers"].split(",")
    assert ssh["macs"] == cfg["macs"].split(",")
    assert ssh["hassh"] == hashlib.md5(";".join(",".join(ssh[k]) for k in ("kex", "ciphers", "macs", "compression"))
                                       .encode()).hexdigest()
    assert ssh["hassh_string"].split(";")[0] == ",".join(ssh["kex"])


@pytest.mark.lab
@pytest.mark.daemons("ssh:10022", "ssh-kex:12223")
def test_restricted_kex_changes_hassh(scan):
    assert _svc(scan, 10022)["ssh"]["hassh"] != _svc(scan, 12223)["ssh"]["hassh"]
    assert [k["type"] for k in _svc(scan, 12223)["ssh"]["host_keys"]] == ["ssh-ed25519"]


# ---------------------------------------------------------------------------- version ranges

@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{k}:{p}"), id=f"{k}:{p}")
                                  for p, (k, _pkg) in sorted(RANGES.items())])
def test_version_range_contains_the_installed_version(scan, port):
    from hostprint.match.versionrange import contains
    from hostprint.model import VersionRange

    pkg = RANGES[port][1] or _pg_package()
    installed = upstream_version(pkg)
    d = _svc(scan, port).get("version_range")
    assert d, _svc(scan, port)
    vr = VersionRange.from_dict(d)
    assert vr is not None and (vr.low or vr.high) and not vr.conflict, d
    assert contains(vr, installed), (vr.text, installed)
    assert all("source:" in e.detail for e in vr.evidence if e.method == "behaviour")
    assert re.fullmatch(r"(>= [\d.]+(, < [\d.]+)?|< [\d.]+|[\d.]+\.x)", vr.text), vr.text  # a range, never a point


# ---------------------------------------------------------------------------- reports

@pytest.mark.lab
def test_xml_is_dtd_valid_with_the_new_scripts(scan):
    etree = pytest.importorskip("lxml.etree")
    dtd_path = Path("/usr/share/nmap/nmap.dtd")
    if not dtd_path.exists():
        pytest.skip("nmap.dtd not installed (nmap-common)")
    doc = etree.parse(str(scan[1]))
    dtd = etree.DTD(str(dtd_path))
    assert dtd.validate(doc), dtd.error_log.filter_from_errors()
    ids = {s.get("id") for s in doc.iter("script")}
    assert {"ssl-cert", "tls-fingerprint", "ssh-hostkey", "ssh2-enum-algos", "ssh-hassh", "version-range"} <= ids


@pytest.mark.lab
def test_diff_shows_a_changed_certificate(mflab, tmp_path):
    """Two runs against a stunnel4 of our own on one port, restarted with another certificate
    between them: the diff names the certificate (and nothing about the service) as the change.
    (openssl s_server would do, but it serves one connection at a time and -sV's parallel probes
    keep it busy.)"""
    import shutil

    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not stunnel:
        pytest.skip("stunnel4 not installed (run scripts/setup.sh)")
    db = tmp_path / "inv.sqlite"
    ids = []
    for name in ("a", "b"):
        pem, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj",
                        f"/CN=swap-{name}.hostprint.test", "-keyout", str(key), "-out", str(pem)],
                       check=True, capture_output=True)
        conf = tmp_path / f"{name}.conf"
        conf.write_text(f"foreground = yes\npid =\noutput = {tmp_path / (name + '.log')}\n[swap]\n"
                        f"accept = {ADDR}:{SWAP_PORT}\nconnect = 127.0.0.1:9\ncert = {pem}\nkey = {key}\n")
        server = mflab.spawn("m1", [stunnel, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _in_ns(mflab, "import socket, time\nfor _ in range(100):\n  try:\n"
                          f"    socket.create_connection(({ADDR!r}, {SWAP_PORT}), 1).close(); break\n"
                          "  except OSError: time.sleep(0.1)\n")
            r = hostprint(mflab, "scan", ADDR, "-sT", "-sV", "-p", str(SWAP_PORT), "-n", "--db", str(db),
                          "--progress", "never", "-oJ", "-", timeout=200)
            rec = json.loads(r.stdout.splitlines()[0])
            ids.append(rec["scan"]["id"])
            assert f"swap-{name}" in rec["ports"][0]["service"]["tls"]["cert"]["subject"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    r = hostprint(mflab, "diff", ids[0], ids[1], "--db", str(db), "--json")
    d = json.loads(r.stdout)
    whats = {f["what"]: f for f in d["fingerprints"] if f["port"] == SWAP_PORT}
    assert "certificate" in whats, d
    assert "swap-a" in whats["certificate"]["before"] and "swap-b" in whats["certificate"]["after"]
    assert d["counts"]["fingerprints_changed"] >= 1 and not d["services"]
    text = hostprint(mflab, "diff", ids[0], ids[1], "--db", str(db)).stdout
    assert "Fingerprints" in text and "certificate" in text
