#!/usr/bin/env bash
# Installs everything hostprint, its lab, tests and benchmarks need on a fresh Debian machine (root).
# Debian: the scanners we compare against (nmap, masscan, p0f), packet tools, nftables/iptables for
# the RST guard and the lab, and the real daemons the lab runs. PyPI: the package and test deps.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(nmap p0f masscan hping3 tcpdump nftables iptables iproute2 iputils-ping procps util-linux
      xsltproc libxml2-utils chromium tmux gcc libc6-dev liblwip-dev openssl
      # user-space network stacks whose answers -O must recognise (rootless-container networking)
      slirp4netns passt
      # real daemons the lab runs in its namespaces (never as system services)
      openssh-server openssh-client nginx-light vsftpd redis-server stunnel4 dnsmasq-base memcached
      mosquitto dovecot-imapd dovecot-pop3d mariadb-server postgresql exim4-daemon-light squid slapd
      snmpd chrony tftpd-hpa rsync inetutils-telnetd erlang-base cups-daemon rpcbind etcd-server
      xvfb tigervnc-standalone-server samba)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 2
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # The lab starts its own copies of these daemons inside namespaces: keep the packages' postinst
  # scripts from starting system-wide ones (policy-rc.d exit 101 = "not allowed"), and remove the
  # policy again afterwards unless it was already there.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -E "^WARNING: (Running pip as|Location)" || true
python3 -c "import hostprint, rich, numpy, pytest, hypothesis, libnmap, lxml" \
  || { echo "setup: Python dependencies failed to install" >&2; exit 1; }
echo "setup: done"
