#!/usr/bin/env bash
# Builds the kind CLI pinned in tools/kind/cli/go.mod into the cache directory
# (once per version) and prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${MSP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msp-operator}
version=$(awk '$1 == "sigs.k8s.io/kind" {print $2; exit}' "$here/cli/go.mod")
out=$cache_root/kind/bin/kind-$version
if [ ! -x "$out" ]; then
  mkdir -p "${out%/*}"
  (cd "$here/cli" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$out.tmp" sigs.k8s.io/kind)
  mv "$out.tmp" "$out"
fi
echo "$out"
