"""`hostprint audit` on the demo lab's hosts (issue 19): real daemons and kernels in namespaces;
--apply in the db host's namespace lowers the score, and everything applied is undone."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import needs_root

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SYSCTLS = ["net.ipv4.tcp_ecn", "net.ipv4.ip_default_ttl", "net.ipv4.tcp_timestamps"]


@pytest.fixture(scope="module")
def lab():
    needs_root()
    from hostprint.lab import Lab, demo_spec

    spec = demo_spec(f"a2a{os.getpid() % 1000}")
    spec.hosts = [h for h in spec.hosts if h.name in ("web", "db")]
    with Lab(spec, strict=False) as lab:
        yield lab


def _audit(lab, *args: str) -> tuple[list[dict], str]:
    from hostprint.lab.services import helper_env

    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint.cli", "audit", *args], capture_output=True, text=True,
                 env=helper_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-1000:]
    return [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")], r.stderr


def _sysctls(lab, host: str) -> dict[str, str]:
    return {k: lab.exec(host, ["sysctl", "-n", k], capture_output=True, text=True).stdout.strip() for k in SYSCTLS}


def _method(rep: dict, name: str) -> dict:
    return next(m for m in rep["methods"] if m["method"].startswith(name))


def test_audit_web_names_what_leaks(lab):
    (rep,), _ = _audit(lab, "-oJ", "-", "198.18.0.10")
    stack, banners = _method(rep, "stack"), _method(rep, "banners")
    assert stack["bits"] > 1.0 and "Linux" in stack["learns"], stack
    assert "Debian 12" in banners["learns"], banners  # OpenSSH's Debian package revision
    assert rep["overall_bits"] == max(m["bits"] for m in rep["methods"])
    leaks = " ".join(rep["exposures"])
    assert "OpenSSH" in leaks and "nginx" in leaks, leaks
    names = {c["name"] for c in rep["countermeasures"]}
    assert {"OpenSSH DebianBanner no", "nginx server_tokens off", "fingerprint scrubber on the host"} <= names, names
    assert all(c["sources"] for c in rep["countermeasures"])


def test_audit_apply_lowers_the_score_and_undoes(lab):
    ns = lab.host("db").ns
    before_sysctls = _sysctls(lab, "db")
    (rep,), err = _audit(lab, "-oJ", "-", "--apply", ns, "198.18.0.20")
    stack = _method(rep, "stack")
    assert stack["bits"] > 1.0, stack  # db: Linux with TTL 128 and few options is still named
    after = {m["method"]: m for m in rep["after"]["methods"]}
    assert after[stack["method"]]["bits"] < stack["bits"], (stack, after)
    assert rep["after"]["overall_bits"] < rep["overall_bits"], rep
    applied = {c["name"]: c.get("applied", "") for c in rep["countermeasures"]}
    assert applied["fingerprint scrubber on the host"].startswith("scrubber running"), applied
    assert any(v.startswith("applied in") for k, v in applied.items() if k != "fingerprint scrubber on the host"), applied
    assert applied.get("vsftpd banner", "").startswith("not applied"), applied  # daemon settings are shown only
    # everything undone: sysctls back, no scrubber table in the namespace
    assert _sysctls(lab, "db") == before_sysctls
    rules = lab.exec("db", ["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert "hpscrub_" not in rules, rules


def test_audit_refuses_the_hosts_own_namespace(lab):
    from hostprint.lab.services import helper_env

    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint.cli", "audit", "--apply", "no-such-ns-hp", "198.18.0.20"],
                 capture_output=True, text=True, env=helper_env(), timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def _banner(lab, port: int) -> bytes:
    r = lab.exec(lab.scanner_ns, [sys.executable, "-c", "import socket,sys; s=socket.create_connection(('198.18.0.10', "
                                  f"{port}), 5); sys.stdout.buffer.write(s.recv(200))"], capture_output=True, timeout=30)
    return bytes(r.stdout)


@pytest.mark.daemons("ssh:22", "nginx:80")
def test_audit_apply_daemon_settings_on_web_and_restore(lab):
    """--apply on web edits the lab's own sshd_config and nginx.conf (DebianBanner no, server_tokens
    off), reloads both with SIGHUP, measures again, then puts the files back: the banners method
    falls from "Debian 12" (the whole stack prior) to what a bare "OpenSSH_9.2p1" still says."""
    confs = [lab.tmpdir / "web" / "ssh-22" / "sshd_config", lab.tmpdir / "web" / "nginx-80" / "nginx.conf"]
    before_files = [p.read_bytes() for p in confs]
    assert b"Debian" in _banner(lab, 22)
    (rep,), err = _audit(lab, "-oJ", "-", "-p", "22,80", "--apply", lab.host("web").ns, "198.18.0.10")
    applied = {c["name"]: c.get("applied", "") for c in rep["countermeasures"]}
    for name in ("OpenSSH DebianBanner no", "nginx server_tokens off"):
        assert applied[name].startswith("applied in") and "reloaded" in applied[name], applied
    banners = _method(rep, "banners")
    after = {m["method"]: m for m in rep["after"]["methods"]}
    assert "Debian 12 from" in banners["learns"], banners
    assert "Debian 12 from" not in after[banners["method"]]["learns"], after  # the revision is gone
    assert after[banners["method"]]["bits"] < banners["bits"], (banners, after)
    assert rep["after"]["overall_bits"] < rep["overall_bits"], rep
    assert any("nginx 1.22" in e for e in rep["exposures"])
    assert not any("nginx 1.22" in e for e in rep["after"]["exposures"]), rep["after"]["exposures"]
    # the handshake method does not read banners: the KEXINIT says the same before and after
    hs = _method(rep, "tls/ssh")
    assert hs["bits"] > 0 and after[hs["method"]]["bits"] == hs["bits"], (hs, after)
    # restored: the same files, and the daemons answer with them again
    assert [p.read_bytes() for p in confs] == before_files
    assert b"Debian" in _banner(lab, 22)
