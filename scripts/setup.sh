#!/usr/bin/env bash
# Installs everything hostprint, its lab, tests and benchmarks need on a fresh Debian machine (root).
# Debian: the scanners we compare against (nmap, masscan, p0f), packet tools, nftables/iptables for
# the RST guard and the lab, and the real daemons the lab runs. PyPI: the package and test deps.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(nmap p0f masscan hping3 tcpdump nftables iptables iproute2 iputils-ping procps
      openssh-server openssh-client nginx-light vsftpd redis-server xsltproc libxml2-utils
      chromium tmux liblwip-dev)

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
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postinst scripts may start daemons where an init system runs; the lab starts its own
# copies in namespaces, so stop nothing and change no system configuration here.

python3 -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -E "^WARNING: (Running pip as|Location)" || true
python3 -c "import hostprint, rich, numpy, pytest, hypothesis, libnmap, lxml" \
  || { echo "setup: Python dependencies failed to install" >&2; exit 1; }
echo "setup: done"
