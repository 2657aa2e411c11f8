"""Every lab daemon kind on its own, on the Debian packages this machine has (issue 11).

A security update can change what a daemon accepts; these tests say which daemon broke and why
(package version, rejected config line), instead of one fixture error that takes a whole module
down. They run each kind in a lab of its own, run each config checker on our config (it must
pass) and on our config with one bad line (the failure must name that line), and show that a
lab with one broken daemon still runs the others.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from conftest import needs_root
from hostprint.lab import DaemonUnavailable, HostSpec, Lab, LabSpec
from hostprint.lab import services as svc
from hostprint.lab.daemoncheck import package_version
from hostprint.lab.lab import check_config
from hostprint.lab.services import REGISTRY, ServiceContext

#: A bad line in each config syntax the lab writes (default: "directive value").
BAD_LINE = {"nginx.conf": "hostprintbogus 1;", "dovecot.conf": "hostprintbogus = 1", "smb.conf": "hostprintbogus = 1",
            "data/postgresql.conf": "hostprintbogus = 1"}


def _lab_name(kind: str) -> str:
    return f"k{os.getpid() % 1000}{abs(hash(kind)) % 100000}"[:12]


def _installed(kind: str) -> bool:
    pk = REGISTRY[kind].packages
    return all(package_version(p) for p in pk)


@pytest.mark.lab
@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_each_service_kind_starts_alone(kind):
    needs_root()
    if not _installed(kind):
        pytest.skip(f"{kind}: Debian packages {REGISTRY[kind].packages} not installed (run scripts/setup.sh)")
    port = REGISTRY[kind].default_port
    spec = LabSpec(_lab_name(kind), [HostSpec("h", "198.18.0.40", services=[f"{kind}:{port}"])])
    with Lab(spec, daemon_timeout=40, strict=False) as lab:
        lab.need()  # fails with the daemon, its package version and the rejected line
        from hostprint.lab import netns as N

        assert port in N.listening_tcp_ports(lab.hosts["h"].ns)


CHECKED = sorted(k for k, v in REGISTRY.items() if v.check is not None)


@pytest.mark.parametrize("kind", CHECKED)
def test_config_checker_accepts_ours_and_names_a_bad_line(kind, tmp_path):
    """Our config passes the program's own checker; one bad line is reported with its number,
    its text and the package version."""
    needs_root()
    k = REGISTRY[kind]
    if not _installed(kind):
        pytest.skip(f"{kind}: Debian packages {k.packages} not installed (run scripts/setup.sh)")
    tmp_path.chmod(0o755)
    d = tmp_path / "h" / f"{kind}-{k.default_port}"
    d.mkdir(parents=True)
    ctx = ServiceContext(kind=kind, port=k.default_port, host="h", dir=d, lab_dir=tmp_path)
    argv = k.build(ctx)
    ok = check_config(k, ctx, argv)
    assert ok is None, ok.message()
    if not k.config:
        return  # configured by arguments only (dnsmasq, exim's system config)
    cfg = d / k.config
    bad = BAD_LINE.get(k.config, "hostprintbogus 1")
    with cfg.open("a") as f:
        f.write(bad + "\n")
    failure = check_config(k, ctx, argv)
    assert failure is not None, f"{kind}: checker accepted {bad!r}"
    msg = failure.message()
    assert failure.line is not None and "hostprintbogus" in failure.line.text, msg
    assert f"{k.packages[0]} {package_version(k.packages[0])}" in msg and f"{kind}:{k.default_port}" in msg, msg
    assert "\n" not in msg


@pytest.mark.lab
def test_broken_daemon_fails_only_what_needs_it(monkeypatch):
    """One daemon with a config its checker rejects (here an sshd option no version accepts):
    the lab still runs the others; need() names the broken one with its package and line."""
    needs_root()
    if not shutil.which("redis-server") or not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("redis-server / openssh-server not installed (run scripts/setup.sh)")
    real = REGISTRY["ssh"]

    def ssh_with_bad_line(ctx):
        argv = real.build(ctx)
        with (ctx.dir / "sshd_config").open("a") as f:
            f.write("HostprintBogusOption yes\n")
        return argv

    monkeypatch.setitem(svc.REGISTRY, "ssh", svc.ServiceKind("ssh", 22, ssh_with_bad_line, real.packages, real.check,
                                                             real.config))
    spec = LabSpec(_lab_name("broken"), [HostSpec("web", "198.18.0.10", services=["redis:6379", "ssh:22"])])
    with Lab(spec, strict=False) as lab:
        lab.need("redis")
        with pytest.raises(DaemonUnavailable) as ei:
            lab.need("ssh")
        msg = str(ei.value)
        assert re.search(r"ssh:22 on web \(openssh-server \S+\): config check \(sshd -t\) rejects "
                         r"sshd_config line \d+: 'HostprintBogusOption yes'", msg), msg
        with pytest.raises(DaemonUnavailable):
            lab.need()
        from hostprint.lab import netns as N

        assert 6379 in N.listening_tcp_ports(lab.hosts["web"].ns)
    # a strict lab (the demo's) refuses to come up at all, with the same message
    with pytest.raises(Exception, match=r"sshd_config line \d+: 'HostprintBogusOption yes'"):
        with Lab(spec):
            pass
