"""Real Debian daemons for lab hosts, one small builder per kind.

Why real daemons: banners, TLS stacks and protocol quirks are what the application fingerprinter
must recognise, and a fake server would only test our own assumptions. Each builder writes its
own config into the host's directory in the lab temp dir (never /etc) and returns the argv of a
foreground process, so the lab can track its PID and kill exactly that.

To add a kind: write `def _foo(ctx: ServiceContext) -> list[str]` and decorate it with
`@service("foo", default_port=N)`. Shared one-off setup (like ssh host keys) goes through
`ctx.lab_dir` so it happens once per lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hostprint.errors import UsageError


@dataclass
class ServiceContext:
    kind: str
    port: int
    host: str
    #: Private directory for this one daemon (config, logs, pid files).
    dir: Path
    #: Lab-wide temp dir, for things shared by all hosts (ssh host keys).
    lab_dir: Path

    @property
    def log(self) -> Path:
        return self.dir / "daemon.log"


Builder = Callable[[ServiceContext], list[str]]


@dataclass
class ServiceKind:
    name: str
    default_port: int
    build: Builder


REGISTRY: dict[str, ServiceKind] = {}


def service(name: str, default_port: int) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        REGISTRY[name] = ServiceKind(name, default_port, fn)
        return fn

    return deco


def parse_service(text: str) -> tuple[str, int]:
    """'nginx:80' -> ('nginx', 80); 'nginx' -> ('nginx', 80) using the kind's default port."""
    kind, _, port_s = text.partition(":")
    if kind not in REGISTRY:
        raise UsageError(f"unknown service kind {kind!r} in {text!r} (known: {', '.join(sorted(REGISTRY))})")
    if not port_s:
        return kind, REGISTRY[kind].default_port
    try:
        port = int(port_s)
    except ValueError:
        raise UsageError(f"bad port {port_s!r} in service {text!r}") from None
    if not 1 <= port <= 65535:
        raise UsageError(f"bad port {port_s!r} in service {text!r}")
    return kind, port


def package_root() -> str:
    """Directory that contains the `hostprint` package, for PYTHONPATH of helper processes."""
    return str(Path(__file__).resolve().parents[2])


def _world_readable(path: Path) -> None:
    # nginx workers and sshd's privilege-separated child drop to unprivileged users and must read
    # their files; the lab dir is created 0700 by mkdtemp.
    for p in [path, *path.parents]:
        if str(p) in ("/", "/tmp"):
            break
        p.chmod(p.stat().st_mode | 0o755)


@service("nginx", default_port=80)
def _nginx(ctx: ServiceContext) -> list[str]:
    root = ctx.dir / "html"
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(f"<html><body>hostprint lab host {ctx.host}</body></html>\n")
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (ctx.dir / d).mkdir(exist_ok=True)
    conf = ctx.dir / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {ctx.dir}/nginx.pid;
error_log {ctx.log} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {ctx.dir}/client_body;
    proxy_temp_path {ctx.dir}/proxy;
    fastcgi_temp_path {ctx.dir}/fastcgi;
    uwsgi_temp_path {ctx.dir}/uwsgi;
    scgi_temp_path {ctx.dir}/scgi;
    server {{
        listen {ctx.port} default_server;
        root {root};
        index index.html;
    }}
}}
"""
    )
    _world_readable(root)
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(ctx.dir), "-c", str(conf),
            "-e", str(ctx.log), "-g", "daemon off;"]


def _ssh_host_keys(lab_dir: Path) -> list[Path]:
    """Generate the lab's host keys once; all sshd instances in a lab share them."""
    kdir = lab_dir / "ssh-hostkeys"
    keys = [kdir / f"ssh_host_{t}_key" for t in ("ed25519", "ecdsa", "rsa")]
    if all(k.exists() for k in keys):
        return keys
    kdir.mkdir(parents=True, exist_ok=True)
    for key, t in zip(keys, ("ed25519", "ecdsa", "rsa")):
        if not key.exists():
            extra = ["-b", "2048"] if t == "rsa" else []
            subprocess.run(["ssh-keygen", "-q", "-t", t, *extra, "-N", "", "-C", "hostprint-lab",
                            "-f", str(key)], check=True, stdout=subprocess.DEVNULL)
    return keys


@service("ssh", default_port=22)
def _ssh(ctx: ServiceContext) -> list[str]:
    keys = _ssh_host_keys(ctx.lab_dir)
    # sshd refuses to start without its privilege separation dir; Debian's unit creates it at boot,
    # and there is no systemd here. Creating an empty root-owned dir is harmless.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    conf = ctx.dir / "sshd_config"
    conf.write_text(
        "\n".join(
            [f"Port {ctx.port}", "ListenAddress 0.0.0.0", *[f"HostKey {k}" for k in keys],
             "PidFile none", "UsePAM no", "PermitRootLogin no", "PasswordAuthentication no",
             "KbdInteractiveAuthentication no", "AuthorizedKeysFile none", "LogLevel INFO", ""]
        )
    )
    # sshd insists on an absolute path (it re-execs itself per connection).
    return ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf), "-E", str(ctx.log)]


@service("ftp", default_port=21)
def _ftp(ctx: ServiceContext) -> list[str]:
    conf = ctx.dir / "vsftpd.conf"
    conf.write_text(
        "\n".join(
            ["listen=YES", "listen_ipv6=NO", "background=NO", f"listen_port={ctx.port}",
             "anonymous_enable=YES", "no_anon_password=YES", "local_enable=NO", "write_enable=NO",
             f"anon_root={ctx.dir}", "secure_chroot_dir=/var/run/vsftpd/empty",
             f"vsftpd_log_file={ctx.log}", "xferlog_enable=NO", "seccomp_sandbox=NO",
             "pam_service_name=vsftpd", ""]
        )
    )
    conf.chmod(0o600)
    return [shutil.which("vsftpd") or "/usr/sbin/vsftpd", str(conf)]


@service("redis", default_port=6379)
def _redis(ctx: ServiceContext) -> list[str]:
    return [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(ctx.port),
            "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(ctx.dir), "--logfile", str(ctx.log)]


@service("tcp-listen", default_port=9)
def _tcp_listen(ctx: ServiceContext) -> list[str]:
    return [sys.executable, "-m", "hostprint.lab.holdlistener", "--port", str(ctx.port)]


def helper_env() -> dict[str, str]:
    """Environment for daemons: our package importable (for Python helpers), nothing else special."""
    env = dict(os.environ)
    root = package_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
