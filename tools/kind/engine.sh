#!/usr/bin/env bash
# Makes a Docker engine reachable, installing and starting one where needed.
#
# - An engine that already answers (`docker info`) is used as it is: a
#   developer's Docker Desktop, GitHub Actions' runner.
# - Otherwise, as root on Debian: installs Debian's docker.io (and jq, which
#   the runtime wrapper needs) and starts dockerd in the background, logging
#   to $MSP_CACHE_DIR/kind/dockerd.log. There is no systemd on the machines
#   this is for, hence the plain background process.
# - Hosts whose capability bounding set lacks CAP_SYS_RESOURCE cannot start
#   privileged containers (every kind node is one): dockerd then gets
#   tools/kind/runc-nosysres as its default runtime. Detected, not assumed.
#
# Usage: tools/kind/engine.sh    (exit 0 when `docker info` works afterwards)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${MSP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msp-operator}
log() { echo "engine.sh: $*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "no Docker engine answers and this is not root: start Docker (or set DOCKER_HOST) and re-run"
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { log "no dockerd, and no apt-get to install Debian's docker.io: install a Docker engine"; exit 1; }
  log "installing Debian's docker.io and jq"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io jq >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io jq >/dev/null; }
fi

# Bit 24 of the bounding set is CAP_SYS_RESOURCE.
bounding=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
daemon_json=/etc/docker/daemon.json
mkdir -p /etc/docker
if (( (16#$bounding >> 24 & 1) == 0 )); then
  install -m 0755 "$here/runc-nosysres" /usr/local/sbin/runc-nosysres
  log "this host's capability bounding set lacks CAP_SYS_RESOURCE: registering runc-nosysres as Docker's default runtime"
  echo '{"runtimes":{"nosysres":{"path":"/usr/local/sbin/runc-nosysres"}},"default-runtime":"nosysres"}' > "$daemon_json"
fi

mkdir -p "$cache_root/kind"
log "starting dockerd (log: $cache_root/kind/dockerd.log)"
nohup dockerd >"$cache_root/kind/dockerd.log" 2>&1 &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
log "dockerd did not answer within 60 s; its log ends with:"
tail -n 20 "$cache_root/kind/dockerd.log" >&2
exit 1
