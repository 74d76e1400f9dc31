#!/usr/bin/env bash
# A walk through shoal, inside a throwaway "host" network namespace with its own state and run
# directories: nothing on this machine's own network is touched, and everything is removed at
# the end (also on failure or Ctrl-C).
set -euo pipefail

base=$(mktemp -d /tmp/shoal-demo.XXXXXX)
hostns="$base/host.ns"
touch "$hostns"
unshare --net="$hostns" true
# the demo host's resolv.conf: no DNS server (names of the outside world are not asked for;
# the machine's own resolvers are never used)
printf '# the demo host has no DNS server\n' > "$base/resolv.conf"
export SHOAL_RESOLV_CONF="$base/resolv.conf"

shoal() { nsenter --net="$hostns" shoal --root "$base/root" --run-dir "$base/run" "$@"; }
on_host() { nsenter --net="$hostns" "$@"; }
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
# a command as you would type it: words that need quotes keep them
quoted() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=("$a")
    elif [[ $a == *\'* && $a != *[\"\$\`\\]* ]]; then out+=("\"$a\"")
    else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${out[*]}"
}
show() { printf '$ shoal %s\n' "$(quoted "$@")"; shoal "$@"; }

cleanup() {
  set +e
  ids=$(shoal ps -aq 2>/dev/null)
  [ -n "$ids" ] && shoal rm -f $ids >/dev/null 2>&1
  # anything still running in the demo host's namespace was started by this demo
  ino=$(stat -L -c %i "$hostns" 2>/dev/null)
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "net:[$ino]" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  # the (now empty) cgroups shoal made for the demo's run directory: <cgroup2>/shoal/<hash>/
  scope=$(python3 -c 'import os, sys
from shoal.runtime.cgroup import TOP, mount_point, scope_name
root = mount_point()
print(os.path.join(root, TOP, scope_name(sys.argv[1])) if root else "")' "$base/run" 2>/dev/null)
  if [ -n "$scope" ] && [ -d "$scope" ]; then
    for d in "$scope"/*/; do [ -d "$d" ] && rmdir "$d"; done
    rmdir "$scope"
  fi
  grep -F " $base" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$base"
}
trap cleanup EXIT
on_host ip link set lo up

say "Three networks exist from the start: bridge (the Linux bridge shoal0), host and none"
show network ls

say "A user-defined network gets the next free subnet from Docker's default pools"
show network create --driver bridge isolated
show network ls
show network inspect isolated

say "Two containers on 'isolated': a web server and a client (any host command, no images)"
show run -d --name web --network isolated -- python3 -m http.server 8000
show run -d --name client --network isolated -- sleep 300
show ps
web_ip=$(shoal inspect -f '{{.NetworkSettings.Networks.isolated.IPAddress}}' web)

say "Inside the client: its own eth0 (one end of a veth pair), address and default route"
show exec client -- ip -br addr
show exec client -- ip route

say "The client reaches the web server at $web_ip"
for _ in $(seq 50); do shoal exec client -- python3 -c "import socket; socket.create_connection(('$web_ip', 8000), 1)" 2>/dev/null && break; sleep 0.1; done
show exec client -- python3 -c "import urllib.request as u; r = u.urlopen('http://$web_ip:8000/'); print('HTTP', r.status, r.reason)"
show exec client -- ping -c 2 "$web_ip"

say "Names: on a user-defined network the embedded resolver (127.0.0.11) answers container names"
show exec client -- cat /etc/resolv.conf
show exec client -- getent hosts web
show exec client -- python3 -c "import urllib.request as u; r = u.urlopen('http://web:8000/'); print('HTTP', r.status, r.reason)"
show resolve web

say "On the host: the bridge of 'isolated' and the host ends of the two veth pairs plugged into it"
printf '$ ip -br link\n'; on_host ip -br link
printf '$ bridge link\n'; on_host bridge link

say "The network lists its containers; a container lists its networks"
show network inspect isolated
show inspect client

say "Connecting the client to the default bridge gives it an eth1; disconnecting removes it"
show network connect bridge client
show exec client -- ip -br addr
show network disconnect bridge client
show exec client -- ip -br addr

say "Publishing a port: the host reaches the web server at 127.0.0.1:8080, through a DNAT map"
show run -d --name site --network isolated -p 8080:8000 -- python3 -m http.server 8000
show port site
for _ in $(seq 50); do on_host python3 -c "import socket; socket.create_connection(('127.0.0.1', 8080), 1)" 2>/dev/null && break; sleep 0.1; done
printf '$ python3 -c "urllib.request.urlopen(\x27http://127.0.0.1:8080/\x27)"  (on the host)\n'
on_host python3 -c "import urllib.request as u; r = u.urlopen('http://127.0.0.1:8080/'); print('HTTP', r.status, r.reason)"
printf '$ nft list map ip shoal ports_any\n'; on_host nft list map ip shoal ports_any
show rm -f site

say "Stopping and removing containers leaves nothing behind in the kernel"
show stop web client
show rm web client
show network rm isolated
printf '$ ip -br link\n'; on_host ip -br link
say "Done."
