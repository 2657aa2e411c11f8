#!/usr/bin/env bash
# Installs everything hostprint, its lab, tests and benchmarks need on a fresh Debian machine (root).
# Debian: the scanners we compare against (nmap, masscan, p0f), packet tools, nftables/iptables for
# the RST guard and the lab, and the real daemons the lab runs. PyPI: the package and test deps.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(nmap p0f masscan zmap hping3 tcpdump nftables iptables iproute2 iputils-ping procps util-linux
      xsltproc libxml2-utils chromium tmux gcc libc6-dev liblwip-dev openssl
      # user-space network stacks whose answers -O must recognise (rootless-container networking)
      slirp4netns passt
      # the stack matrix (hostprint/lab/matrix.py): gVisor, and Debian's 6.1 kernel booted in QEMU with a
      # busybox initramfs (the kernel package is only read from /boot, never booted on this machine)
      runsc qemu-system-x86 busybox-static linux-image-amd64
      # real daemons the lab runs in its namespaces (never as system services)
      openssh-server openssh-client nginx-light vsftpd redis-server stunnel4 dnsmasq-base memcached
      mosquitto dovecot-imapd dovecot-pop3d mariadb-server postgresql exim4-daemon-light squid slapd
      snmpd chrony tftpd-hpa rsync inetutils-telnetd erlang-base cups-daemon rpcbind etcd-server
      xvfb tigervnc-standalone-server samba
      # kinds added in issue 16 (held out from the rules: measured after the detectors were frozen)
      ngircd git subversion haproxy varnish apache2 lighttpd beanstalkd nats-server openvpn
      strongswan-charon freeradius krb5-kdc coturn dante-server libcoap3-bin rsyslog rsyslog-relp
      gunicorn python3-uvicorn avahi-daemon kamailio python3-pymodbus python3-serial
      python3-serial-asyncio xrdp caddy
      # the fingerprint scrubber's NFQUEUE stage (ctypes) and its lab's HTTP client (issue 19)
      libnetfilter-queue1 curl
      # bench/passive/probes.py reads the tools' CPU and peak RSS through GNU time
      time)

# Every run refreshes the package lists and brings exactly the listed packages -- and the other
# binary packages built from the same Debian sources, e.g. dovecot-core beside dovecot-imapd,
# samba-common-bin beside samba -- to the versions a fresh machine gets today. CI on a new machine
# installs today's versions (a security update once changed what cupsd accepts), so a developer's
# machine must test the same. Nothing else on the system is upgraded.
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$(id -u)" != 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 2
  fi
  echo "setup: warning: not root, so the listed Debian packages were not brought to current versions" >&2
else
  if ! apt-get update -qq; then
    if [ ${#missing[@]} -gt 0 ]; then
      echo "setup: apt-get update failed and these packages are missing: ${missing[*]}" >&2
      exit 1
    fi
    echo "setup: warning: apt-get update failed; testing the installed package versions" >&2
  fi
  # The lab starts its own copies of these daemons inside namespaces: keep the packages' postinst
  # scripts from starting (or restarting) system-wide ones (policy-rc.d exit 101 = "not allowed"),
  # and remove the policy again afterwards unless it was already there.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  versions() { dpkg-query -W -f='${binary:Package} ${Version}\n' "$@" 2>/dev/null | sort; }
  # sources of the listed packages -> every installed binary package built from them
  srcs=$(dpkg-query -W -f='${source:Package}\n' "${DEBS[@]}" 2>/dev/null | sort -u)
  siblings=$(dpkg-query -W -f='${binary:Package} ${source:Package} ${db:Status-Abbrev}\n' 2>/dev/null \
             | awk -v s="$srcs" 'BEGIN{n=split(s,a,"\n"); for(i=1;i<=n;i++) src[a[i]]=1} $3 ~ /^ii/ && ($2 in src) {print $1}')
  before=$(versions "${DEBS[@]}" $siblings)
  apt_opts=(-y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  [ ${#missing[@]} -gt 0 ] && echo "setup: installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${DEBS[@]}" >/dev/null
  if [ -n "$siblings" ]; then
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install --only-upgrade "${apt_opts[@]}" $siblings >/dev/null
  fi
  after=$(versions "${DEBS[@]}" $siblings)
  changed=$(join -a2 <(echo "$before") <(echo "$after") | awk 'NF==3 && $2!=$3 {print "  " $1 " " $2 " -> " $3}')
  [ -n "$changed" ] && printf 'setup: Debian packages brought to current versions:\n%s\n' "$changed"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test,cluster]' 2>&1 | grep -v -E "^WARNING: (Running pip as|Location)" || true
python3 -c "import hostprint, rich, numpy, pytest, hypothesis, libnmap, lxml" \
  || { echo "setup: Python dependencies failed to install" >&2; exit 1; }
echo "setup: done"
