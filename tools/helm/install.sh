#!/usr/bin/env bash
# Installs Helm (the version pinned below) from its Go module into a cache
# directory outside the tree, and prints the path of the helm binary. Returns
# at once when that binary is already there. The chart tests (tests/helm.rs)
# and `make test` use it; nothing else needs Helm.
#
# Helm is built with `go install helm.sh/helm/v3/cmd/helm@VERSION`, with the
# same -ldflags as Helm's own release build so that `helm version` and the
# default Kubernetes version of `helm template`/`helm lint` are right.
#
# Usage: tools/helm/install.sh            (prints .../helm-VERSION/helm)
# Env:   MSP_HELM_VERSION  another Helm v3 release (default below)
#        MSP_CACHE_DIR     cache root (default ~/.cache/msp-operator)
set -euo pipefail

version=${MSP_HELM_VERSION:-v3.22.0}
cache_root=${MSP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msp-operator}
out=$cache_root/helm-$version
if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "tools/helm/install.sh: Go is required to build Helm $version" >&2; exit 1; }

# The Kubernetes minor Helm's release build reports as the default cluster
# version follows its client-go module (v0.N.x -> 1.N).
module_dir=$(GOFLAGS= go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$module_dir" ] || { echo "tools/helm/install.sh: cannot download helm.sh/helm/v3@$version" >&2; exit 1; }
k8s_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]; exit}' "$module_dir/go.mod")

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
if [ -n "$k8s_minor" ]; then
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
fi

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.helm-build.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "tools/helm/install.sh: building Helm $version into $out (takes a few minutes the first time)" >&2
start=$(date +%s)
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
"$tmp/helm" version --short >/dev/null || { echo "tools/helm/install.sh: the built helm does not run" >&2; exit 1; }
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "tools/helm/install.sh: Helm $version ready in $(( $(date +%s) - start ))s" >&2
echo "$out/helm"
