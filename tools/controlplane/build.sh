#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go
# modules pinned in this directory's go.mod, into OUT_DIR (default: the cache
# directory the Rust test harness looks in). The build is atomic: binaries are
# written to a temporary directory and moved into place only when all succeed,
# so an interrupted build never leaves a half-populated cache.
#
# Usage: tools/controlplane/build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3} $1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' go.mod | head -n1)
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' go.mod | head -n1)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "build.sh: cannot read versions from go.mod" >&2; exit 1; }

cache_root=${MSP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msp-operator}
out=${1:-$cache_root/controlplane/k8s-$k8s_version-etcd-$etcd_version}
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/etcd" ] && [ -x "$out/kubectl" ]; then
  echo "$out"
  exit 0
fi

minor=${k8s_version#v1.}; minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
# component-base and client-go carry the version the binaries report (/version,
# `kubectl version`); without these the server says v0.0.0-master.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

mkdir -p "${out%/*}"
tmp=$(mktemp -d "${out%/*}/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building Kubernetes $k8s_version and etcd $etcd_version into $out (first build takes a while)" >&2
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
