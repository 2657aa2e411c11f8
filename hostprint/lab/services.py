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


@service("ssh", default_port=22, packages=("openssh-server",), check=_check_sshd, config="sshd_config")
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


@service("ftp", default_port=21, packages=("vsftpd",), config="vsftpd.conf")
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


@service("redis", default_port=6379, packages=("redis-server",))
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


# ---------------------------------------------------------------------------- application-fingerprinting kinds
# Added for issue 5 (hostprint/probes/app.py). Each daemon runs in the foreground with its own
# config under ctx.dir; package names are in the function docstrings' first word.


def _hostile(mode: str) -> Builder:
    def build(ctx: ServiceContext) -> list[str]:
        return [sys.executable, "-m", "hostprint.lab.hostile", "--mode", mode, "--port", str(ctx.port)]

    return build


# tcp-close: accepts and closes at once (nmap's "tcpwrapped"); the hostile-* kinds: see lab/hostile.py.
service("tcp-close", default_port=7)(_hostile("close"))
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


@service("postgresql", default_port=5432, packages=_pg_package(),
         check=lambda ctx, argv: [*argv, "-C", "port"], config="data/postgresql.conf")
def _postgresql(ctx: ServiceContext) -> list[str]:
    """postgresql-15 (cluster made with initdb as user postgres, never as root)."""
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
    hba = data / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all postgres 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 scram-sha-256\n")
    return ["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", str(data), "-p", str(ctx.port),
            "-c", "listen_addresses=*", "-c", f"unix_socket_directories={ctx.dir}", "-c", "shared_buffers=8MB",
            "-c", "logging_collector=off"]


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
