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

import functools
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
    #: The host has an IPv6 address (a dual-stack lab): daemons that can listen on both families do.
    ipv6: bool = False

    @property
    def log(self) -> Path:
        return self.dir / "daemon.log"


Builder = Callable[[ServiceContext], list[str]]
#: argv of a daemon's own config checker, given the context and the daemon's argv.
Checker = Callable[[ServiceContext, list[str]], list[str]]


@dataclass
class ServiceKind:
    name: str
    default_port: int
    build: Builder
    #: Debian packages whose versions a failure message names (the daemon's own package first).
    packages: tuple[str, ...] = ()
    #: The program's config checker (nginx -t, sshd -t …), run before the daemon starts.
    check: Checker | None = None
    #: The main config file, relative to ctx.dir (where a checker's complaint usually points).
    config: str | None = None
    #: Output of a checker that exits 0 but still means "rejected" (testparm only warns).
    check_fails_on: str | None = None


REGISTRY: dict[str, ServiceKind] = {}


def service(name: str, default_port: int, *, packages: tuple[str, ...] = (), check: Checker | None = None,
            config: str | None = None, check_fails_on: str | None = None) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        REGISTRY[name] = ServiceKind(name, default_port, fn, packages, check, config, check_fails_on)
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


def _bin(name: str, fallback: str) -> str:
    return shutil.which(name) or fallback


def _check_nginx(ctx: ServiceContext, argv: list[str]) -> list[str]:
    return [_bin("nginx", "/usr/sbin/nginx"), "-t", "-p", str(ctx.dir), "-c", str(ctx.dir / "nginx.conf"), "-e", str(ctx.log)]


def _check_sshd(ctx: ServiceContext, argv: list[str]) -> list[str]:
    return ["/usr/sbin/sshd", "-t", "-f", str(ctx.dir / "sshd_config")]


def _check_dovecot(ctx: ServiceContext, argv: list[str]) -> list[str]:
    return [_bin("doveconf", "/usr/bin/doveconf"), "-n", "-c", str(ctx.dir / "dovecot.conf")]


@service("nginx", default_port=80, packages=("nginx",), check=_check_nginx, config="nginx.conf")
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
        listen {ctx.port} default_server;{f"{chr(10)}        listen [::]:{ctx.port} default_server;" if ctx.ipv6 else ""}
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


@service("ssh", default_port=22, packages=("openssh-server",), check=_check_sshd, config="sshd_config")
def _ssh(ctx: ServiceContext) -> list[str]:
    keys = _ssh_host_keys(ctx.lab_dir)
    # sshd refuses to start without its privilege separation dir; Debian's unit creates it at boot,
    # and there is no systemd here. Creating an empty root-owned dir is harmless.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    conf = ctx.dir / "sshd_config"
    conf.write_text(
        "\n".join(
            [f"Port {ctx.port}", "ListenAddress 0.0.0.0", *(["ListenAddress ::"] if ctx.ipv6 else []),
             *[f"HostKey {k}" for k in keys],
             "PidFile none", "UsePAM no", "PermitRootLogin no", "PasswordAuthentication no",
             "KbdInteractiveAuthentication no", "AuthorizedKeysFile none", "LogLevel INFO", ""]
        )
    )
    # sshd insists on an absolute path (it re-execs itself per connection).
    return ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf), "-E", str(ctx.log)]


@service("ftp", default_port=21, packages=("vsftpd",), config="vsftpd.conf")
def _ftp(ctx: ServiceContext) -> list[str]:
    return _vsftpd(ctx, [])


# vsftpd with explicit FTPS (AUTH TLS) and no data-connection commands: its FEAT differs from the
# default one in the lines the version-range rules read (AUTH TLS without AUTH SSL, no PASV).
@service("ftp-tls", default_port=2121, packages=("vsftpd",), config="vsftpd.conf")
def _ftp_tls(ctx: ServiceContext) -> list[str]:
    crt, key = _lab_cert(ctx.lab_dir)
    return _vsftpd(ctx, ["ssl_enable=YES", f"rsa_cert_file={crt}", f"rsa_private_key_file={key}",
                         "allow_anon_ssl=YES", "port_enable=NO", "pasv_enable=NO"])


def _vsftpd(ctx: ServiceContext, extra: list[str]) -> list[str]:
    conf = ctx.dir / "vsftpd.conf"
    conf.write_text(
        "\n".join(
            # listen_ipv6=YES alone listens on both families (vsftpd.conf(5))
            [*(["listen=NO", "listen_ipv6=YES"] if ctx.ipv6 else ["listen=YES", "listen_ipv6=NO"]),
             "background=NO", f"listen_port={ctx.port}",
             "anonymous_enable=YES", "no_anon_password=YES", "local_enable=NO", "write_enable=NO",
             f"anon_root={ctx.dir}", "secure_chroot_dir=/var/run/vsftpd/empty",
             f"vsftpd_log_file={ctx.log}", "xferlog_enable=NO", "seccomp_sandbox=NO",
             "pam_service_name=vsftpd", *extra, ""]
        )
    )
    conf.chmod(0o600)
    return [shutil.which("vsftpd") or "/usr/sbin/vsftpd", str(conf)]


@service("redis", default_port=6379, packages=("redis-server",))
def _redis(ctx: ServiceContext) -> list[str]:
    return [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(ctx.port),
            "--bind", "0.0.0.0", *(["::"] if ctx.ipv6 else []), "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(ctx.dir), "--logfile", str(ctx.log)]


@service("tcp-listen", default_port=9)
def _tcp_listen(ctx: ServiceContext) -> list[str]:
    return [sys.executable, "-m", "hostprint.lab.holdlistener", "--port", str(ctx.port),
            *(["--bind", "::"] if ctx.ipv6 else [])]


def helper_env() -> dict[str, str]:
    """Environment for daemons: our package importable (for Python helpers), nothing else special."""
    env = dict(os.environ)
    root = package_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ---------------------------------------------------------------------------- application-fingerprinting kinds
# Added for issue 5 (hostprint/probes/app.py). Each daemon runs in the foreground with its own
# config under ctx.dir; package names are in the function docstrings' first word.


def _hostile(mode: str) -> Builder:
    def build(ctx: ServiceContext) -> list[str]:
        return [sys.executable, "-m", "hostprint.lab.hostile", "--mode", mode, "--port", str(ctx.port)]

    return build


# tcp-close: accepts and closes at once (nmap's "tcpwrapped"); the hostile-* kinds: see lab/hostile.py.
service("tcp-close", default_port=7)(_hostile("close"))
# tcp-line: one unknown line, then closes (nmap -sV sends its whole probe list fast: issue 18)
service("tcp-line", default_port=4001)(_hostile("line"))
service("hostile-endless", default_port=9001)(_hostile("endless"))
service("hostile-big", default_port=9002)(_hostile("big"))
service("hostile-tarpit", default_port=9003)(_hostile("tarpit"))
service("hostile-tlsgarbage", default_port=9004)(_hostile("tlsgarbage"))


def _lab_cert(lab_dir: Path) -> tuple[Path, Path]:
    """One self-signed certificate per lab (CN and a SAN that tests can look for)."""
    d = lab_dir / "tls"
    crt, key = d / "lab.crt", d / "lab.key"
    if not crt.exists():
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                        "-subj", "/CN=hostprint-lab/O=hostprint", "-addext",
                        "subjectAltName=DNS:lab.hostprint.test,IP:198.18.0.99",
                        "-keyout", str(key), "-out", str(crt)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _world_readable(d)
        key.chmod(0o644)
    return crt, key


def _stunnel_in_front(ctx: ServiceContext, backend: list[str], sock: Path) -> list[str]:
    """stunnel4 on ctx.port forwarding to a backend on a unix socket; both in one session."""
    crt, key = _lab_cert(ctx.lab_dir)
    conf = ctx.dir / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\noutput = {ctx.log}\n[svc]\naccept = 0.0.0.0:{ctx.port}\n"
                    f"connect = {sock}\ncert = {crt}\nkey = {key}\n")
    import shlex

    return ["sh", "-c", f"{shlex.join(backend)} & exec {shlex.quote(shutil.which('stunnel4') or 'stunnel4')} "
                        f"{shlex.quote(str(conf))}"]


@service("tls-redis", default_port=6380, packages=("stunnel4", "redis-server"), config="stunnel.conf")
def _tls_redis(ctx: ServiceContext) -> list[str]:
    """stunnel4 + redis-server on a unix socket (ssl/redis)."""
    sock = ctx.dir / "redis.sock"
    return _stunnel_in_front(ctx, [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0",
                                   "--unixsocket", str(sock), "--unixsocketperm", "777", "--save", "",
                                   "--appendonly", "no", "--dir", str(ctx.dir), "--logfile",
                                   str(ctx.dir / "redis.log")], sock)


@service("tls-http", default_port=8443, packages=("stunnel4", "nginx"), check=_check_nginx, config="nginx.conf")
def _tls_http(ctx: ServiceContext) -> list[str]:
    """stunnel4 + nginx on a unix socket (ssl/http)."""
    sock = ctx.dir / "nginx.sock"
    argv = _nginx(ServiceContext(ctx.kind, ctx.port, ctx.host, ctx.dir, ctx.lab_dir))
    conf = ctx.dir / "nginx.conf"
    conf.write_text(conf.read_text().replace(f"listen {ctx.port} default_server;", f"listen unix:{sock};"))
    return _stunnel_in_front(ctx, argv, sock)


@service("memcached", default_port=11211, packages=("memcached",))
def _memcached(ctx: ServiceContext) -> list[str]:
    """memcached; UDP off (-U 0) as in Debian's default config."""
    return [shutil.which("memcached") or "/usr/bin/memcached", "-u", "memcache", "-p", str(ctx.port),
            "-U", "0", "-l", "0.0.0.0", "-m", "16"]


@service("mqtt", default_port=1883, packages=("mosquitto",), config="mosquitto.conf")
def _mqtt(ctx: ServiceContext) -> list[str]:
    """mosquitto (MQTT broker)."""
    conf = ctx.dir / "mosquitto.conf"
    conf.write_text(f"listener {ctx.port} 0.0.0.0\nallow_anonymous true\npersistence false\n"
                    f"log_dest stderr\npid_file {ctx.dir / 'mosquitto.pid'}\nuser root\n")
    return [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)]


@service("dns", default_port=53, packages=("dnsmasq-base",),
         check=lambda ctx, argv: [argv[0], "--test", *[a for a in argv[1:] if a != "-k"]])
def _dns(ctx: ServiceContext) -> list[str]:
    """dnsmasq-base: DNS on TCP and UDP ctx.port, no upstream, answers version.bind. When the lab
    wrote its host table (LAB_HOSTS in the lab dir: every host's name and address), it answers A
    and PTR queries for them (<host>.<lab>.hostprint.test), so reverse DNS can be tested for real."""
    argv = [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "-k", "-C", "/dev/null", f"--port={ctx.port}",
            "--no-resolv", "--no-hosts", "--user=root", f"--pid-file={ctx.dir / 'dnsmasq.pid'}",
            "--address=/lab.hostprint.test/198.18.0.99", "--log-facility=" + str(ctx.log)]
    hosts = ctx.lab_dir / LAB_HOSTS
    if hosts.exists():
        argv.append(f"--addn-hosts={hosts}")
    return argv


#: The lab's host table for its DNS server (/etc/hosts format), in the lab's temp dir.
LAB_HOSTS = "dns-hosts"


def _dovecot(ctx: ServiceContext, proto: str) -> list[str]:
    run = ctx.dir / "run"
    run.mkdir(exist_ok=True)
    conf = ctx.dir / "dovecot.conf"
    other = {"imap": "pop3", "pop3": "imap"}[proto]
    conf.write_text(f"""protocols = {proto}
listen = *
base_dir = {run}
state_dir = {ctx.dir / 'state'}
log_path = {ctx.log}
ssl = no
disable_plaintext_auth = no
mail_location = mbox:/tmp/hostprint-nomail
passdb {{
  driver = static
  args = password=hostprint-lab
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service {proto}-login {{
  inet_listener {proto} {{
    port = {ctx.port}
  }}
  inet_listener {proto}s {{
    port = 0
  }}
}}
service {other}-login {{
  inet_listener {other} {{
    port = 0
  }}
  inet_listener {other}s {{
    port = 0
  }}
}}
""")
    _world_readable(ctx.dir)
    return [shutil.which("dovecot") or "/usr/sbin/dovecot", "-F", "-c", str(conf)]


@service("imap", default_port=143, packages=("dovecot-imapd", "dovecot-core"), check=_check_dovecot,
         config="dovecot.conf")
def _imap(ctx: ServiceContext) -> list[str]:
    """dovecot-imapd."""
    return _dovecot(ctx, "imap")


@service("pop3", default_port=110, packages=("dovecot-pop3d", "dovecot-core"), check=_check_dovecot,
         config="dovecot.conf")
def _pop3(ctx: ServiceContext) -> list[str]:
    """dovecot-pop3d."""
    return _dovecot(ctx, "pop3")


@service("mysql", default_port=3306, packages=("mariadb-server", "mariadb-server-core"))
def _mysql(ctx: ServiceContext) -> list[str]:
    """mariadb-server with a fresh datadir; skip-name-resolve so greetings are not delayed by DNS."""
    data = ctx.dir / "data"
    if not (data / "mysql").exists():
        subprocess.run([shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db", "--no-defaults",
                        f"--datadir={data}", "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}",
            f"--socket={ctx.dir / 'mysql.sock'}", f"--port={ctx.port}", "--bind-address=0.0.0.0",
            "--skip-name-resolve", "--skip-grant-tables", "--user=root", f"--pid-file={ctx.dir / 'mysqld.pid'}",
            f"--log-error={ctx.log}", "--innodb-buffer-pool-size=8M", "--skip-log-bin"]


def _pg_package() -> tuple[str, ...]:
    """postgresql-NN of the newest installed server (the metapackage's version says little)."""
    import glob

    majors = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    return (f"postgresql-{majors[-1].split('/')[-2]}",) if majors else ("postgresql",)


def _pg(ctx: ServiceContext, hba: str, ssl: bool) -> list[str]:
    import glob

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise UsageError("postgresql is not installed (Debian package postgresql)")
    bindir = bins[-1]
    data = ctx.dir / "data"
    _world_readable(ctx.dir)
    shutil.chown(ctx.dir, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=str(ctx.dir))
    (data / "pg_hba.conf").write_text(hba)
    extra: list[str] = []
    if ssl:
        crt, key = _lab_cert(ctx.lab_dir)
        for src, dst in ((crt, "server.crt"), (key, "server.key")):
            shutil.copy(src, data / dst)
            shutil.chown(data / dst, "postgres", "postgres")
            (data / dst).chmod(0o600)
        extra = ["-c", "ssl=on", "-c", f"ssl_cert_file={data / 'server.crt'}", "-c", f"ssl_key_file={data / 'server.key'}"]
    return ["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", str(data), "-p", str(ctx.port),
            "-c", "listen_addresses=*", "-c", f"unix_socket_directories={ctx.dir}", "-c", "shared_buffers=8MB",
            "-c", "logging_collector=off", *extra]


def _pg_check(ctx: ServiceContext, argv: list[str]) -> list[str]:
    return [*argv, "-C", "port"]


@service("postgresql", default_port=5432, packages=_pg_package(), check=_pg_check, config="data/postgresql.conf")
def _postgresql(ctx: ServiceContext) -> list[str]:
    """postgresql-15 (cluster made with initdb as user postgres, never as root)."""
    return _pg(ctx, "local all all trust\nhost all postgres 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 scram-sha-256\n",
               False)


# PostgreSQL in the set-ups identification must survive (issue 16): each pg_hba method with SSL off,
# and SSL on with hostssl-only and with plain host entries.
for _name, _port, _hba, _ssl in (
        ("pg-trust", 5441, "host all all 0.0.0.0/0 trust", False),
        ("pg-md5", 5442, "host all all 0.0.0.0/0 md5", False),
        ("pg-scram", 5443, "host all all 0.0.0.0/0 scram-sha-256", False),
        ("pg-reject", 5444, "host all all 0.0.0.0/0 reject", False),
        ("pg-hostssl", 5445, "hostssl all all 0.0.0.0/0 scram-sha-256", True),
        ("pg-ssl", 5446, "host all all 0.0.0.0/0 trust", True)):
    service(_name, default_port=_port, packages=_pg_package(), check=_pg_check, config="data/postgresql.conf")(
        functools.partial(_pg, hba=f"local all all trust\n{_hba}\n", ssl=_ssl))


@service("smtp", default_port=25, packages=("exim4-daemon-light",),
         check=lambda ctx, argv: [argv[0], "-bV"])
def _smtp(ctx: ServiceContext) -> list[str]:
    """exim4-daemon-light with Debian's generated config; -oX picks the port, -bdf stays in front."""
    # Debian's config listens on loopback only; -oX with an address list overrides local_interfaces.
    return [shutil.which("exim4") or "/usr/sbin/exim4", "-bdf", "-oX", f"0.0.0.0.{ctx.port}",
            "-oP", str(ctx.dir / "exim.pid")]


@service("squid", default_port=3128, packages=("squid",),
         check=lambda ctx, argv: [argv[0], "-k", "parse", "-f", str(ctx.dir / "squid.conf")], config="squid.conf")
def _squid(ctx: ServiceContext) -> list[str]:
    """squid (HTTP proxy), no cache, no access log."""
    conf = ctx.dir / "squid.conf"
    conf.write_text(f"http_port {ctx.port}\npid_filename {ctx.dir / 'squid.pid'}\ncache_log {ctx.log}\n"
                    "access_log none\ncache deny all\nhttp_access allow all\n"
                    f"coredump_dir {ctx.dir}\nvisible_hostname lab.hostprint.test\nshutdown_lifetime 1 seconds\n"
                    "dns_nameservers 127.0.0.1\n")
    _world_readable(ctx.dir)
    shutil.chown(ctx.dir, "proxy", "proxy")
    return [shutil.which("squid") or "/usr/sbin/squid", "-N", "-f", str(conf)]


@service("ldap", default_port=389, packages=("slapd",),
         check=lambda ctx, argv: [argv[0], "-T", "test", "-u", "-f", str(ctx.dir / "slapd.conf")], config="slapd.conf")
def _ldap(ctx: ServiceContext) -> list[str]:
    """slapd with a minimal slapd.conf (core schema, one mdb database)."""
    db = ctx.dir / "db"
    db.mkdir(exist_ok=True)
    conf = ctx.dir / "slapd.conf"
    conf.write_text(f"include /etc/ldap/schema/core.schema\npidfile {ctx.dir / 'slapd.pid'}\n"
                    "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
                    f"database mdb\nsuffix \"dc=lab,dc=hostprint\"\ndirectory {db}\nmaxsize 10485760\n")
    return [shutil.which("slapd") or "/usr/sbin/slapd", "-d", "0", "-h", f"ldap://0.0.0.0:{ctx.port}/",
            "-f", str(conf)]


@service("rsync", default_port=873, packages=("rsync",), config="rsyncd.conf")
def _rsync(ctx: ServiceContext) -> list[str]:
    """rsync --daemon with one read-only module."""
    conf = ctx.dir / "rsyncd.conf"
    conf.write_text(f"pid file = {ctx.dir / 'rsyncd.pid'}\nuse chroot = no\n[pub]\npath = {ctx.dir}\nread only = yes\n")
    return [shutil.which("rsync") or "/usr/bin/rsync", "--daemon", "--no-detach", f"--port={ctx.port}",
            f"--config={conf}", f"--log-file={ctx.log}"]


@service("epmd", default_port=4369, packages=("erlang-base",))
def _epmd(ctx: ServiceContext) -> list[str]:
    """erlang-base's epmd (Erlang port mapper)."""
    return [shutil.which("epmd") or "/usr/bin/epmd", "-port", str(ctx.port)]


@service("snmp", default_port=161, packages=("snmpd",), config="snmpd.conf")
def _snmp(ctx: ServiceContext) -> list[str]:
    """snmpd on UDP and TCP ctx.port (TCP too so the lab's readiness check sees it), community public."""
    conf = ctx.dir / "snmpd.conf"
    conf.write_text("rocommunity public default\nsysLocation hostprint lab\nsysContact lab@hostprint.test\n")
    return [shutil.which("snmpd") or "/usr/sbin/snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(ctx.log),
            "-p", str(ctx.dir / "snmpd.pid"), f"udp:{ctx.port},tcp:{ctx.port}"]


def _udp_with_marker(ctx: ServiceContext, argv: list[str]) -> list[str]:
    """UDP-only daemons: the lab waits for a TCP listener, so a silent holdlistener on the same
    port number marks readiness (tests scan only the UDP side of these ports)."""
    import shlex

    return ["sh", "-c", f"{shlex.join(argv)} & exec {shlex.quote(sys.executable)} -m hostprint.lab.holdlistener "
                        f"--port {ctx.port}"]


@service("ntp", default_port=123, packages=("chrony",),
         check=lambda ctx, argv: [_bin("chronyd", "/usr/sbin/chronyd"), "-p", "-f", str(ctx.dir / "chrony.conf")],
         config="chrony.conf")
def _ntp(ctx: ServiceContext) -> list[str]:
    """chrony serving NTP on UDP ctx.port (never touches the clock: -x)."""
    conf = ctx.dir / "chrony.conf"
    conf.write_text(f"port {ctx.port}\ncmdport 0\nallow all\nlocal stratum 8\npidfile {ctx.dir / 'chronyd.pid'}\n"
                    f"driftfile {ctx.dir / 'drift'}\n")
    return _udp_with_marker(ctx, [shutil.which("chronyd") or "/usr/sbin/chronyd", "-d", "-x", "-u", "root",
                                  "-f", str(conf)])


@service("tftp", default_port=69, packages=("tftpd-hpa",))
def _tftp(ctx: ServiceContext) -> list[str]:
    """tftpd-hpa in standalone mode (-L) on UDP ctx.port."""
    root = ctx.dir / "tftproot"
    root.mkdir(exist_ok=True)
    return _udp_with_marker(ctx, [shutil.which("in.tftpd") or "/usr/sbin/in.tftpd", "-L", "-u", "root",
                                  "--address", f"0.0.0.0:{ctx.port}", "-s", str(root)])


@service("telnet", default_port=23, packages=("inetutils-telnetd",))
def _telnet(ctx: ServiceContext) -> list[str]:
    """inetutils-telnetd behind a tiny inetd (hostprint.lab.inetd: one process per connection)."""
    return [sys.executable, "-m", "hostprint.lab.inetd", "--port", str(ctx.port), "--",
            shutil.which("telnetd") or "/usr/sbin/telnetd"]


@service("ipp", default_port=631, packages=("cups-daemon",),
         check=lambda ctx, argv: [argv[0], "-t", *argv[2:]], config="cupsd.conf")
def _ipp(ctx: ServiceContext) -> list[str]:
    """cups-daemon (cupsd -f) with its files under ctx.dir."""
    for d in ("spool", "cache", "state", "log", "tmp", "ppd"):
        (ctx.dir / d).mkdir(exist_ok=True)
    files = ctx.dir / "cups-files.conf"
    files.write_text(f"ServerRoot {ctx.dir}\nRequestRoot {ctx.dir / 'spool'}\nCacheDir {ctx.dir / 'cache'}\n"
                     f"StateDir {ctx.dir / 'state'}\nTempDir {ctx.dir / 'tmp'}\nAccessLog {ctx.dir / 'log'}/access_log\n"
                     f"ErrorLog {ctx.log}\nPageLog {ctx.dir / 'log'}/page_log\n"
                     "SystemGroup root\nFileDevice No\nSandboxing Relaxed\n")
    conf = ctx.dir / "cupsd.conf"
    conf.write_text(f"Listen 0.0.0.0:{ctx.port}\nServerName lab.hostprint.test\nBrowsing No\nWebInterface Yes\n"
                    "LogLevel warn\n<Location />\n  Order allow,deny\n  Allow all\n</Location>\n")
    return [shutil.which("cupsd") or "/usr/sbin/cupsd", "-f", "-c", str(conf), "-s", str(files)]


@service("rpcbind", default_port=111, packages=("rpcbind",))
def _rpcbind(ctx: ServiceContext) -> list[str]:
    """rpcbind (ONC RPC port mapper) in the foreground; its port is fixed at 111 by rpcbind itself."""
    if ctx.port != 111:
        raise UsageError(f"rpcbind listens on 111 only, not {ctx.port}")
    Path("/run/rpcbind").mkdir(exist_ok=True)
    return [shutil.which("rpcbind") or "/usr/sbin/rpcbind", "-f", "-w"]


@service("etcd", default_port=2379, packages=("etcd-server",))
def _etcd(ctx: ServiceContext) -> list[str]:
    """etcd-server: client API on ctx.port, peer URL on loopback ctx.port+1 (single member)."""
    return [shutil.which("etcd") or "/usr/bin/etcd", "--name", "lab", "--data-dir", str(ctx.dir / "data"),
            "--listen-client-urls", f"http://0.0.0.0:{ctx.port}", "--advertise-client-urls",
            f"http://127.0.0.1:{ctx.port}", "--listen-peer-urls", f"http://127.0.0.1:{ctx.port + 1}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{ctx.port + 1}", "--initial-cluster",
            f"lab=http://127.0.0.1:{ctx.port + 1}", "--logger", "zap", "--log-outputs", "stderr"]


@service("x11", default_port=6001, packages=("xvfb",))
def _x11(ctx: ServiceContext) -> list[str]:
    """xvfb: X server display N on TCP 6000+N, access control off (-ac) so the setup reply is sent."""
    if not 6000 <= ctx.port <= 6063:
        raise UsageError(f"x11 port {ctx.port}: X displays listen on 6000+N (6000-6063)")
    return [shutil.which("Xvfb") or "/usr/bin/Xvfb", f":{ctx.port - 6000}", "-listen", "tcp", "-ac",
            "-nolisten", "unix", "-screen", "0", "320x200x8"]


@service("erlang", default_port=25672, packages=("erlang-base",))
def _erlang(ctx: ServiceContext) -> list[str]:
    """erlang-base: a bare Erlang node whose distribution port is ctx.port; it starts its own epmd
    on ctx.port+1 (ERL_EPMD_PORT) so it never meets the lab's `epmd` kind."""
    return ["env", f"ERL_EPMD_PORT={ctx.port + 1}", f"HOME={ctx.dir}", shutil.which("erl") or "/usr/bin/erl",
            "-noshell", "-sname", "lab", "-setcookie", "hostprint-lab", "-kernel", "inet_dist_listen_min",
            str(ctx.port), "-kernel", "inet_dist_listen_max", str(ctx.port)]


@service("vnc", default_port=5900, packages=("tigervnc-standalone-server",))
def _vnc(ctx: ServiceContext) -> list[str]:
    """tigervnc-standalone-server (Xvnc), no authentication; X display picked free (-displayfd)."""
    return [shutil.which("Xvnc") or "/usr/bin/Xvnc", "-displayfd", "1", "-rfbport", str(ctx.port),
            "-interface", "0.0.0.0", "-SecurityTypes", "None", "-nolisten", "tcp", "-geometry", "320x200"]


@service("smb", default_port=445, packages=("samba", "samba-common-bin"),
         check=lambda ctx, argv: [_bin("testparm", "/usr/bin/testparm"), "-s", str(ctx.dir / "smb.conf")],
         config="smb.conf", check_fails_on=r"Unknown parameter encountered|Ignoring unknown parameter")
def _smb(ctx: ServiceContext) -> list[str]:
    """samba's smbd, standalone server, every state directory under ctx.dir."""
    dirs = {k: ctx.dir / k for k in ("lock", "state", "cache", "private", "ncalrpc", "share")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    conf = ctx.dir / "smb.conf"
    conf.write_text(f"""[global]
  workgroup = HOSTPRINTLAB
  netbios name = LABSMB
  server role = standalone server
  smb ports = {ctx.port}
  pid directory = {ctx.dir}
  lock directory = {dirs['lock']}
  state directory = {dirs['state']}
  cache directory = {dirs['cache']}
  private dir = {dirs['private']}
  ncalrpc dir = {dirs['ncalrpc']}
  log file = {ctx.log}
  load printers = no
  disable spoolss = yes
  map to guest = Bad User
[pub]
  path = {dirs['share']}
  read only = yes
  guest ok = yes
""")
    return [shutil.which("smbd") or "/usr/sbin/smbd", "--foreground", "--no-process-group", "--debug-stdout",
            "-s", str(conf)]


# ---------------------------------------------------------------------------- issue 16: kinds the lab did not have
# Added only after the protocol detectors were frozen in git (generalisation is measured on these).
# Python helpers that need Debian's python3-* modules run with Debian's interpreter.
DEB_PYTHON = "/usr/bin/python3"


def _html_root(ctx: ServiceContext) -> Path:
    root = ctx.dir / "html"
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(f"<html><head><title>hostprint lab</title></head><body>{ctx.host}</body></html>\n")
    _world_readable(root)
    return root


# config= is left out where the checker accepts an unknown line (ngircd --configtest, caddy
# validate) or names it in a form the lab's line finder does not read (lighttpd "line: N",
# freeradius "file[N]"): the checker still runs before the daemon.
@service("ircd", default_port=6667, packages=("ngircd",),
         check=lambda ctx, argv: [argv[0], "--configtest", "-f", str(ctx.dir / "ngircd.conf")])
def _ircd(ctx: ServiceContext) -> list[str]:
    """ngircd (IRC) in the foreground, no DNS/ident lookups (the lab has no resolver)."""
    (ctx.dir / "motd").write_text("hostprint lab\n")
    conf = ctx.dir / "ngircd.conf"
    conf.write_text(f"[Global]\nName = irc.lab.hostprint.test\nInfo = hostprint lab\nPorts = {ctx.port}\nListen = 0.0.0.0\n"
                    f"PidFile = {ctx.dir / 'ngircd.pid'}\nMotdFile = {ctx.dir / 'motd'}\n[Options]\nDNS = no\nIdent = no\nPAM = no\n")
    return [_bin("ngircd", "/usr/sbin/ngircd"), "-n", "-f", str(conf)]


# No XMPP kind: prosody 0.12.3 (Debian 12) sometimes hangs before it even logs, inside a namespace
# or not (seen here 2026-12-04; cause not found), which would make every lab that has it flaky.
# The XMPP detector was measured once on it (bench/RESULTS.md) and is tested on spec-built bytes.


@service("git", default_port=9418, packages=("git",))
def _git(ctx: ServiceContext) -> list[str]:
    """git daemon (git://) exporting one bare repository."""
    repos = ctx.dir / "repos"
    if not (repos / "lab.git").exists():
        subprocess.run(["git", "init", "-q", "--bare", str(repos / "lab.git")], check=True)
    return ["git", "daemon", "--reuseaddr", f"--base-path={repos}", "--export-all", f"--port={ctx.port}",
            "--listen=0.0.0.0", "--informative-errors"]


@service("svn", default_port=3690, packages=("subversion",))
def _svn(ctx: ServiceContext) -> list[str]:
    """subversion's svnserve (svn://) serving one repository."""
    repos = ctx.dir / "repos"
    if not (repos / "lab").exists():
        repos.mkdir(exist_ok=True)
        subprocess.run(["svnadmin", "create", str(repos / "lab")], check=True)
    return [_bin("svnserve", "/usr/bin/svnserve"), "-d", "--foreground", "--listen-port", str(ctx.port),
            "--listen-host", "0.0.0.0", "-r", str(repos)]


@service("haproxy", default_port=8090, packages=("haproxy",), config="haproxy.cfg",
         check=lambda ctx, argv: [argv[0], "-c", "-f", str(ctx.dir / "haproxy.cfg")])
def _haproxy(ctx: ServiceContext) -> list[str]:
    """haproxy as an HTTP front end whose only backend is down (its own 503 page answers)."""
    conf = ctx.dir / "haproxy.cfg"
    conf.write_text(f"global\n  pidfile {ctx.dir / 'haproxy.pid'}\ndefaults\n  mode http\n  timeout connect 1s\n"
                    f"  timeout client 5s\n  timeout server 5s\nfrontend fe\n  bind 0.0.0.0:{ctx.port}\n"
                    "  default_backend be\nbackend be\n  server s1 127.0.0.1:9 check\n")
    return [_bin("haproxy", "/usr/sbin/haproxy"), "-db", "-f", str(conf)]


@service("varnish", default_port=6081, packages=("varnish",))
def _varnish(ctx: ServiceContext) -> list[str]:
    """varnishd in the foreground in front of a backend that is down (its synthetic 503 answers)."""
    return [_bin("varnishd", "/usr/sbin/varnishd"), "-F", "-j", "none", "-a", f"0.0.0.0:{ctx.port}",
            "-b", "127.0.0.1:9", "-n", str(ctx.dir / "varnish"), "-s", "malloc,16m", "-T", "none"]


def _apache_conf(ctx: ServiceContext, tls: bool) -> Path:
    root = _html_root(ctx)
    mods = "/usr/lib/apache2/modules"
    load = ["mpm_event", "authz_core", "dir", "mime"] + (["socache_shmcb", "ssl"] if tls else [])
    lines = [f"LoadModule {m}_module {mods}/mod_{m}.so" for m in load]
    lines += [f"PidFile {ctx.dir / 'apache2.pid'}", f"ErrorLog {ctx.log}", f"DefaultRuntimeDir {ctx.dir}",
              f"Mutex file:{ctx.dir}", f"Listen 0.0.0.0:{ctx.port}", "ServerName lab.hostprint.test",
              "User www-data", "Group www-data", f"DocumentRoot {root}", "TypesConfig /etc/mime.types"]
    if tls:
        crt, key = _lab_cert(ctx.lab_dir)
        lines += ["SSLEngine on", f"SSLCertificateFile {crt}", f"SSLCertificateKeyFile {key}"]
    conf = ctx.dir / "apache2.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _check_apache(ctx: ServiceContext, argv: list[str]) -> list[str]:
    return [_bin("apache2", "/usr/sbin/apache2"), "-t", "-f", str(ctx.dir / "apache2.conf")]


@service("apache", default_port=8082, packages=("apache2", "apache2-bin"), check=_check_apache, config="apache2.conf")
def _apache(ctx: ServiceContext) -> list[str]:
    """apache2 (httpd) with a minimal config of its own."""
    return [_bin("apache2", "/usr/sbin/apache2"), "-DFOREGROUND", "-f", str(_apache_conf(ctx, False))]


@service("apache-tls", default_port=8444, packages=("apache2", "apache2-bin"), check=_check_apache, config="apache2.conf")
def _apache_tls(ctx: ServiceContext) -> list[str]:
    """apache2 with mod_ssl's native TLS on a non-standard port (plaintext gets mod_ssl's 400)."""
    return [_bin("apache2", "/usr/sbin/apache2"), "-DFOREGROUND", "-f", str(_apache_conf(ctx, True))]


def _nginx_tls(ctx: ServiceContext, protocols: str) -> list[str]:
    argv = _nginx(ctx)
    crt, key = _lab_cert(ctx.lab_dir)
    conf = ctx.dir / "nginx.conf"
    conf.write_text(conf.read_text().replace(
        f"listen {ctx.port} default_server;",
        f"listen {ctx.port} ssl default_server;\n        ssl_certificate {crt};\n        ssl_certificate_key {key};\n"
        f"        ssl_protocols {protocols};"))
    return argv


@service("nginx-tls", default_port=8445, packages=("nginx",), check=_check_nginx, config="nginx.conf")
def _nginx_tls_any(ctx: ServiceContext) -> list[str]:
    """nginx with native TLS (ssl listen) on a non-standard port (plaintext gets nginx's 497 page)."""
    return _nginx_tls(ctx, "TLSv1.2 TLSv1.3")


@service("tls13-only", default_port=8446, packages=("nginx",), check=_check_nginx, config="nginx.conf")
def _tls13_only(ctx: ServiceContext) -> list[str]:
    """nginx speaking TLS 1.3 only."""
    return _nginx_tls(ctx, "TLSv1.3")


@service("tls12-only", default_port=8447, packages=("nginx",), check=_check_nginx, config="nginx.conf")
def _tls12_only(ctx: ServiceContext) -> list[str]:
    """nginx speaking TLS 1.2 only."""
    return _nginx_tls(ctx, "TLSv1.2")


@service("ssh-kex", default_port=2223, packages=("openssh-server",), check=_check_sshd, config="sshd_config")
def _ssh_kex(ctx: ServiceContext) -> list[str]:
    """OpenSSH restricted to one key exchange (curve25519-sha256) and one host key type."""
    argv = _ssh(ctx)
    conf = ctx.dir / "sshd_config"
    conf.write_text(conf.read_text() + "KexAlgorithms curve25519-sha256\nHostKeyAlgorithms ssh-ed25519\n")
    return argv


@service("lighttpd", default_port=8083, packages=("lighttpd",),
         check=lambda ctx, argv: [argv[0], "-tt", "-f", str(ctx.dir / "lighttpd.conf")])
def _lighttpd(ctx: ServiceContext) -> list[str]:
    """lighttpd with a minimal config."""
    root = _html_root(ctx)
    conf = ctx.dir / "lighttpd.conf"
    conf.write_text(f'server.document-root = "{root}"\nserver.port = {ctx.port}\nserver.bind = "0.0.0.0"\n'
                    f'server.pid-file = "{ctx.dir}/lighttpd.pid"\nserver.errorlog = "{ctx.log}"\n'
                    'index-file.names = ( "index.html" )\n')
    return [_bin("lighttpd", "/usr/sbin/lighttpd"), "-D", "-f", str(conf)]


@service("beanstalkd", default_port=11300, packages=("beanstalkd",))
def _beanstalkd(ctx: ServiceContext) -> list[str]:
    """beanstalkd work queue."""
    return [_bin("beanstalkd", "/usr/bin/beanstalkd"), "-l", "0.0.0.0", "-p", str(ctx.port)]


@service("nats", default_port=4222, packages=("nats-server",))
def _nats(ctx: ServiceContext) -> list[str]:
    """nats-server (NATS messaging)."""
    return [_bin("nats-server", "/usr/sbin/nats-server"), "-a", "0.0.0.0", "-p", str(ctx.port)]


@service("openvpn", default_port=1194, packages=("openvpn",))
def _openvpn(ctx: ServiceContext) -> list[str]:
    """openvpn in server mode (many clients) over TCP, lab certificate, no tls-auth; its tun device
    lives in the host's namespace with a 198.19.250.0/24 pool (benchmarking range, no route out)."""
    crt, key = _lab_cert(ctx.lab_dir)
    return [_bin("openvpn", "/usr/sbin/openvpn"), "--dev", "tun", "--proto", "tcp-server", "--port", str(ctx.port),
            "--local", "0.0.0.0", "--server", "198.19.250.0", "255.255.255.0", "--topology", "subnet",
            "--ca", str(crt), "--cert", str(crt), "--key", str(key), "--dh", "none", "--verb", "3",
            "--writepid", str(ctx.dir / "openvpn.pid")]


@service("ike", default_port=500, packages=("strongswan-charon",))
def _ike(ctx: ServiceContext) -> list[str]:
    """strongSwan's charon answering IKE on UDP ctx.port (no connection configured: it refuses
    every proposal); a TCP marker on the same port for the lab's readiness check."""
    conf = ctx.dir / "strongswan.conf"
    conf.write_text(f"charon {{\n  port = {ctx.port}\n  port_nat_t = {ctx.port + 4000}\n  install_routes = no\n"
                    "  load_modular = yes\n  plugins {\n    include /etc/strongswan.d/charon/*.conf\n  }\n"
                    "  filelog {\n    stderr {\n      default = 1\n    }\n  }\n}\n")
    return _udp_with_marker(ctx, ["env", f"STRONGSWAN_CONF={conf}", "/usr/lib/ipsec/charon"])


@service("radius", default_port=1812, packages=("freeradius",),
         check=lambda ctx, argv: [_bin("freeradius", "/usr/sbin/freeradius"), "-C", "-l", "stdout", "-d",
                                  str(ctx.dir / "raddb")])
def _radius(ctx: ServiceContext) -> list[str]:
    """freeradius with Debian's configuration copied under ctx.dir, the lab's addresses as a
    client (RADIUS servers answer only known clients), auth on UDP ctx.port."""
    raddb = ctx.dir / "raddb"
    if not raddb.exists():
        shutil.copytree("/etc/freeradius/3.0", raddb, symlinks=True)
        rc = raddb / "radiusd.conf"
        rc.write_text(rc.read_text().replace("\tuser = freerad", "\t#user = freerad").replace("\tgroup = freerad",
                                                                                              "\t#group = freerad"))
        with (raddb / "clients.conf").open("a") as f:
            f.write("\nclient hostprintlab {\n\tipaddr = 198.18.0.0/15\n\tsecret = hostprint-lab\n}\n")
    return _udp_with_marker(ctx, [_bin("freeradius", "/usr/sbin/freeradius"), "-f", "-d", str(raddb), "-l", "stdout",
                                  "-i", "0.0.0.0", "-p", str(ctx.port)])


def _krb5_env(ctx: ServiceContext) -> dict[str, str]:
    return {"KRB5_CONFIG": str(ctx.dir / "krb5.conf"), "KRB5_KDC_PROFILE": str(ctx.dir / "kdc.conf")}


@service("kdc", default_port=88, packages=("krb5-kdc",))
def _kdc(ctx: ServiceContext) -> list[str]:
    """MIT krb5-kdc for realm LAB.HOSTPRINT.TEST, database under ctx.dir, TCP and UDP ctx.port."""
    realm = "LAB.HOSTPRINT.TEST"
    (ctx.dir / "krb5.conf").write_text(f"[libdefaults]\n default_realm = {realm}\n[realms]\n {realm} = {{\n"
                                       f"  kdc = 127.0.0.1:{ctx.port}\n }}\n")
    (ctx.dir / "kdc.conf").write_text(f"[kdcdefaults]\n kdc_ports = {ctx.port}\n kdc_tcp_ports = {ctx.port}\n[realms]\n"
                                      f" {realm} = {{\n  database_name = {ctx.dir / 'principal'}\n"
                                      f"  key_stash_file = {ctx.dir / 'stash'}\n }}\n[logging]\n kdc = STDERR\n")
    env = {**os.environ, **_krb5_env(ctx)}
    if not (ctx.dir / "principal").exists():
        subprocess.run([_bin("kdb5_util", "/usr/sbin/kdb5_util"), "create", "-s", "-r", realm, "-P", "hostprint-lab"],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ["env", *[f"{k}={v}" for k, v in _krb5_env(ctx).items()], _bin("krb5kdc", "/usr/sbin/krb5kdc"), "-n",
            "-r", realm, "-P", str(ctx.dir / "krb5kdc.pid")]


@service("turn", default_port=3478, packages=("coturn",))
def _turn(ctx: ServiceContext) -> list[str]:
    """coturn's turnserver (STUN/TURN) on TCP and UDP ctx.port, no TLS/DTLS, no CLI."""
    return [_bin("turnserver", "/usr/bin/turnserver"), "-n", "--listening-port", str(ctx.port), "--listening-ip",
            "0.0.0.0", "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout",
            "--pidfile", str(ctx.dir / "turnserver.pid"), "--realm", "lab.hostprint.test"]


@service("socks", default_port=1080, packages=("dante-server",), config="danted.conf",
         check=lambda ctx, argv: [argv[0], "-V", "-f", str(ctx.dir / "danted.conf")])
def _socks(ctx: ServiceContext) -> list[str]:
    """dante-server (SOCKS 4/5) that accepts clients but relays nothing (every request is blocked)."""
    conf = ctx.dir / "danted.conf"
    conf.write_text(f"logoutput: stderr\ninternal: 0.0.0.0 port = {ctx.port}\nexternal: eth0\n"
                    "clientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"
                    "client pass {\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n}\n"
                    "socks block {\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n}\n")
    return [_bin("danted", "/usr/sbin/danted"), "-f", str(conf), "-p", str(ctx.dir / "danted.pid")]


@service("coap", default_port=5683, packages=("libcoap3-bin",))
def _coap(ctx: ServiceContext) -> list[str]:
    """libcoap's example coap-server on UDP ctx.port; it also listens on TCP ctx.port (CoAP over
    TCP, RFC 8323), which is what the lab's readiness check sees."""
    return [_bin("coap-server-openssl", "/usr/bin/coap-server-openssl"), "-A", "0.0.0.0", "-p", str(ctx.port)]


@service("nmbd", default_port=137, packages=("samba", "samba-common-bin"),
         check=lambda ctx, argv: [_bin("testparm", "/usr/bin/testparm"), "-s", str(ctx.dir / "smb.conf")],
         config="smb.conf", check_fails_on=r"Unknown parameter encountered|Ignoring unknown parameter")
def _nmbd(ctx: ServiceContext) -> list[str]:
    """samba's nmbd (NetBIOS name service, UDP 137 only: nmbd's port is fixed)."""
    if ctx.port != 137:
        raise UsageError(f"nmbd listens on UDP 137 only, not {ctx.port}")
    for d in ("lock", "state", "cache", "private"):
        (ctx.dir / d).mkdir(exist_ok=True)
    conf = ctx.dir / "smb.conf"
    conf.write_text(f"[global]\n  workgroup = HOSTPRINTLAB\n  netbios name = LABNMB\n  server role = standalone server\n"
                    f"  pid directory = {ctx.dir}\n  lock directory = {ctx.dir / 'lock'}\n"
                    f"  state directory = {ctx.dir / 'state'}\n  cache directory = {ctx.dir / 'cache'}\n"
                    f"  private dir = {ctx.dir / 'private'}\n  log file = {ctx.log}\n")
    return _udp_with_marker(ctx, [_bin("nmbd", "/usr/sbin/nmbd"), "--foreground", "--no-process-group",
                                  "--debug-stdout", "-s", str(conf)])


@service("relp", default_port=2514, packages=("rsyslog", "rsyslog-relp"), config="rsyslog.conf",
         check=lambda ctx, argv: [argv[0], "-N1", "-f", str(ctx.dir / "rsyslog.conf")])
def _relp(ctx: ServiceContext) -> list[str]:
    """rsyslog receiving RELP (imrelp) on ctx.port, writing to a file under ctx.dir."""
    conf = ctx.dir / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{ctx.dir}")\nmodule(load="imrelp")\ninput(type="imrelp" port="{ctx.port}")\n'
                    f'*.* action(type="omfile" file="{ctx.dir / "messages"}")\n')
    return [_bin("rsyslogd", "/usr/sbin/rsyslogd"), "-n", "-f", str(conf), "-i", str(ctx.dir / "rsyslogd.pid")]


_WSGI_APP = "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n" \
            "    return [b'hostprint lab\\n']\n"
_ASGI_APP = ("async def app(scope, receive, send):\n    assert scope['type'] == 'http'\n"
             "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})\n"
             "    await send({'type': 'http.response.body', 'body': b'hostprint lab\\n'})\n")


@service("gunicorn", default_port=8001, packages=("gunicorn", "python3-gunicorn"))
def _gunicorn(ctx: ServiceContext) -> list[str]:
    """gunicorn serving a one-function WSGI app."""
    (ctx.dir / "labapp.py").write_text(_WSGI_APP)
    return [DEB_PYTHON, "-m", "gunicorn", "-b", f"0.0.0.0:{ctx.port}", "--chdir", str(ctx.dir), "-w", "1", "labapp:app"]


@service("uvicorn", default_port=8002, packages=("python3-uvicorn",))
def _uvicorn(ctx: ServiceContext) -> list[str]:
    """uvicorn serving a one-function ASGI app."""
    (ctx.dir / "labasgi.py").write_text(_ASGI_APP)
    return [DEB_PYTHON, "-m", "uvicorn", "--host", "0.0.0.0", "--port", str(ctx.port), "--app-dir", str(ctx.dir),
            "labasgi:app"]


@service("mdns", default_port=5353, packages=("avahi-daemon",), config="avahi-daemon.conf")
def _mdns(ctx: ServiceContext) -> list[str]:
    """avahi-daemon (mDNS responder; UDP 5353 is fixed) without D-Bus, publishing its host name."""
    if ctx.port != 5353:
        raise UsageError(f"mdns listens on UDP 5353 only, not {ctx.port}")
    conf = ctx.dir / "avahi-daemon.conf"
    conf.write_text("[server]\nhost-name=lablab\nuse-ipv4=yes\nuse-ipv6=no\nenable-dbus=no\nratelimit-burst=1000\n"
                    "[publish]\npublish-addresses=yes\npublish-workstation=yes\n")
    return _udp_with_marker(ctx, [_bin("avahi-daemon", "/usr/sbin/avahi-daemon"), "--no-drop-root", "--no-chroot",
                                  "--no-rlimits", "-f", str(conf)])


@service("sip", default_port=5060, packages=("kamailio",), config="kamailio.cfg",
         check=lambda ctx, argv: [argv[0], "-c", "-f", str(ctx.dir / "kamailio.cfg")])
def _sip(ctx: ServiceContext) -> list[str]:
    """kamailio (SIP proxy) on UDP and TCP ctx.port answering every request itself (sl 200)."""
    import glob

    mpath = (glob.glob("/usr/lib/*/kamailio/modules/") or ["/usr/lib/x86_64-linux-gnu/kamailio/modules/"])[0]
    conf = ctx.dir / "kamailio.cfg"
    conf.write_text(f'#!KAMAILIO\nlisten=udp:0.0.0.0:{ctx.port}\nlisten=tcp:0.0.0.0:{ctx.port}\nchildren=1\n'
                    f'mpath="{mpath}"\nloadmodule "sl.so"\nrequest_route {{\n  sl_send_reply("200", "OK");\n}}\n')
    return [_bin("kamailio", "/usr/sbin/kamailio"), "-DD", "-E", "-f", str(conf), "-P", str(ctx.dir / "kamailio.pid"),
            "-Y", str(ctx.dir)]


_MODBUS_SERVER = """import sys
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.server import StartTcpServer
ident = ModbusDeviceIdentification(info_name={"VendorName": "hostprint lab", "ProductCode": "LABPLC",
                                              "MajorMinorRevision": "1.0"})
store = ModbusSlaveContext(hr=ModbusSequentialDataBlock(0, [0] * 16))
StartTcpServer(context=ModbusServerContext(slaves=store, single=True), identity=ident, address=("0.0.0.0", int(sys.argv[1])))
"""


@service("modbus", default_port=502, packages=("python3-pymodbus", "python3-serial", "python3-serial-asyncio"))
def _modbus(ctx: ServiceContext) -> list[str]:
    """pymodbus' Modbus/TCP server with a device identification (Debian python3-pymodbus)."""
    (ctx.dir / "modbus_server.py").write_text(_MODBUS_SERVER)
    return [DEB_PYTHON, str(ctx.dir / "modbus_server.py"), str(ctx.port)]


@service("rdp", default_port=3389, packages=("xrdp",), config="xrdp.ini")
def _rdp(ctx: ServiceContext) -> list[str]:
    """xrdp's listener (no session manager: enough for the RDP negotiation) on ctx.port."""
    ini = ctx.dir / "xrdp.ini"
    shutil.copy("/etc/xrdp/xrdp.ini", ini)
    Path("/run/xrdp/sockdir").mkdir(parents=True, exist_ok=True)
    return [_bin("xrdp", "/usr/sbin/xrdp"), "--nodaemon", "--port", str(ctx.port), "--config", str(ini)]


@service("caddy", default_port=8084, packages=("caddy",),
         check=lambda ctx, argv: [_bin("caddy", "/usr/bin/caddy"), "validate", "--config", str(ctx.dir / "Caddyfile"),
                                  "--adapter", "caddyfile"])
def _caddy(ctx: ServiceContext) -> list[str]:
    """caddy serving a fixed answer on plain HTTP ctx.port, admin API off."""
    conf = ctx.dir / "Caddyfile"
    conf.write_text(f"{{\n  admin off\n  auto_https off\n  storage file_system {ctx.dir / 'data'}\n}}\n"
                    f"http://:{ctx.port} {{\n  respond \"hostprint lab\" 200\n}}\n")
    return ["env", f"HOME={ctx.dir}", f"XDG_DATA_HOME={ctx.dir}", f"XDG_CONFIG_HOME={ctx.dir}", _bin("caddy", "/usr/bin/caddy"),
            "run", "--config", str(conf), "--adapter", "caddyfile"]
