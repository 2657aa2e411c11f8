"""Version ranges from behaviour on the real daemons of this machine (issue 16's data leftovers):

* vsftpd (Debian's) in two configurations: its FEAT before login must be what the rules and the unit
  tests were written from (tests/test_svdata_units.py holds the measured lists), and the range the
  rules give must contain the installed upstream version (dpkg-query, never a constant here);
* smbd: a real Samba answering the same SMB2 NEGOTIATE gets its Samba range and never a Windows one.
"""

from __future__ import annotations

import json
import os

import pytest
from test_app import upstream_version
from test_svdata_units import VSFTPD_DEFAULT, VSFTPD_TLS_NODATA

from conftest import hostprint, needs_root

ADDR = "198.18.0.57"
FTP, FTP_TLS, SMB = 10021, 10990, 10445
SERVICES = {FTP: "ftp", FTP_TLS: "ftp-tls", SMB: "smb"}


@pytest.fixture(scope="module")
def sdlab():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec
    from hostprint.lab.daemoncheck import package_version
    from hostprint.lab.services import REGISTRY

    missing = sorted({p for k in SERVICES.values() for p in REGISTRY[k].packages if not package_version(p)})
    if missing:
        pytest.skip(f"lab daemons not installed (run scripts/setup.sh): {', '.join(missing)}")
    spec = LabSpec(name=f"sd{os.getpid() % 10000}",
                   hosts=[HostSpec(name="v1", address=ADDR, services=[f"{k}:{p}" for p, k in SERVICES.items()])])
    with Lab(spec, daemon_timeout=60, strict=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def ports(sdlab):
    r = hostprint(sdlab, "scan", ADDR, "-sT", "-sV", "-p", ",".join(map(str, SERVICES)), "-n", "--no-db",
                  "--progress", "never", "-oJ", "-", timeout=180)
    host = json.loads(r.stdout.splitlines()[0])
    return {p["port"]: p["service"] or {} for p in host["ports"]}


def _range(svc: dict):
    from hostprint.model import VersionRange

    vr = VersionRange.from_dict(svc.get("version_range"))
    assert vr is not None, svc
    return vr


def _feat_seen(vr) -> list[str]:
    line = next(e.detail for e in vr.evidence if e.method == "observed" and e.detail.startswith("ftp: feat "))
    return line.removeprefix("ftp: feat ").split(";")[0].split(", ")


@pytest.mark.lab
@pytest.mark.parametrize("port, feat, rules", [
    (FTP, VSFTPD_DEFAULT, {"vsftpd-feat-before-login"}),
    (FTP_TLS, VSFTPD_TLS_NODATA, {"vsftpd-feat-before-login", "vsftpd-feat-honest-pasv",
                                  "vsftpd-auth-tls-without-ssl"}),
], ids=["default", "tls-nodata"])
def test_vsftpd_range_contains_the_installed_version(ports, port, feat, rules):
    from hostprint.match.versionrange import contains

    svc = ports[port]
    assert svc.get("product") == "vsftpd", svc
    vr = _range(svc)
    assert _feat_seen(vr) == feat  # the measured lists the unit tests use are this daemon's
    assert {e.detail.split(":")[0] for e in vr.evidence if e.method == "behaviour"} == rules
    installed = upstream_version("vsftpd")
    assert vr.conflict is None and contains(vr, installed), (vr.text, installed)
    assert svc.get("version") == installed  # the banner's version, which the range checked


@pytest.mark.lab
def test_samba_gets_its_own_range_and_no_windows_one(ports):
    from hostprint.match.versionrange import contains

    svc = ports[SMB]
    assert (svc.get("product") or "").startswith("Samba"), svc
    vr = _range(svc)
    rules = [e.detail.split(":")[0] for e in vr.evidence if e.method == "behaviour"]
    assert rules and all(r.startswith("samba-") for r in rules), rules
    assert contains(vr, upstream_version("samba")) and vr.conflict is None
