#!/usr/bin/env bash
# Install the Debian packages shoal, its tests and its demo use, if any is missing.
# Idempotent: does nothing (and needs no network) when everything is there.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v iptables-restore >/dev/null 2>&1 || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)  # tests: the conntrack table
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)  # tests: an upstream DNS server
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)  # tests and demo: dig
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)  # bench/dns.py
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)  # bench/overlay.py
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# tests and bench/plugins.py: the real engines that drive shoal's plugins, each started by
# the tests in a throwaway network namespace and a private mount namespace
command -v podman >/dev/null 2>&1 || need+=(podman conmon runc)  # shoal-cni under Podman
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)  # the reference plugins
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)  # shoal's Docker network plugin
[ -x /bin/busybox ] || need+=(busybox-static)  # the engines' image: a busybox rootfs
# tests and bench: a real etcd cluster for the global store (bench/etcd.py), its members in
# throwaway network namespaces (the package's own service is never started: see below)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # no package may start its service while installed: docker.io's would start a dockerd in
  # the machine's own namespace, which changes its iptables and adds docker0 (policy-rc.d
  # 101: "action forbidden", honoured by invoke-rc.d and deb-systemd-invoke)
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# made by shoal install-deps while it installs packages\nexit 101\n' \
      > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  # nor be left enabled for the next boot (docker.io, containerd, podman and etcd-server
  # enable theirs): every unit the install enabled is disabled again, nothing else
  wanted_units() { find /etc/systemd/system -path '*.wants/*' -type l 2>/dev/null | sort; }
  before=$(wanted_units)
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
  for link in $(comm -13 <(echo "$before") <(wanted_units)); do
    unit=$(basename "$link")
    # (systemctl --root works whether or not systemd runs, and drops the unit's aliases)
    command -v systemctl >/dev/null 2>&1 &&
      { systemctl --root=/ disable "$unit" >/dev/null 2>&1 || true; }
    rm -f "$link"
    echo "install-deps: $unit stays disabled (the tests start what they need themselves)"
  done
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install-deps: shoal needs Python 3.11 or newer (found $(python3 --version))" >&2
  exit 1
}
