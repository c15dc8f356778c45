#!/usr/bin/env bash
# `make e2e-kind`: the kind tier. Proves the operator as it is deployed.
#
#  1. Provisions what is missing: a Docker engine (tools/kind/engine.sh), the
#     pinned kind CLI (tools/kind/install.sh), a node image (kind's upstream
#     kindest/node where it can be pulled, else tools/kind/node-image.sh
#     builds one offline), Helm, and the operator image
#     (tools/image/build.sh, from a release build on this host).
#  2. Creates a kind cluster (one control-plane node, one worker) and loads
#     the image into it under two tags.
#  3. Runs tests/in_cluster.rs: the chart installed with two replicas, probes,
#     leader hand-over, a rolling upgrade under watch, metrics through the
#     Service, the ServiceAccount's limits, uninstall.
#  4. Runs the integration suite against the same cluster
#     (MSP_TEST_KUBECONFIG), with the operator out of cluster as in
#     `make test` (tests that need the local control plane's audit log or
#     its own processes say "skipped").
#  5. Deletes the cluster (KEEP_CLUSTER=1 keeps it for a look).
#
# Environment: KIND_NODE_IMAGE (a node image to use as is), KIND_CLUSTER_NAME.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
started=$(date +%s)
step() { echo "e2e-kind: [$(($(date +%s) - started)) s] $*" >&2; }
name=${KIND_CLUSTER_NAME:-msp-operator-e2e}
cache_root=${MSP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msp-operator}

bash tools/kind/engine.sh
kind=$(bash tools/kind/install.sh)
controlplane=$(bash tools/controlplane/build.sh)   # kubectl, for the suite
MSP_HELM=${MSP_HELM:-$(bash tools/helm/install.sh)}
export MSP_HELM
step "engine, kind $("$kind" version | awk '{print $2}'), Helm and kubectl ready"

node_image=${KIND_NODE_IMAGE:-}
if [ -z "$node_image" ]; then
  upstream=$(cd tools/kind/cli && sed -n 's/^const Image = "\(.*\)"$/\1/p' \
    "$(go list -m -f '{{.Dir}}' sigs.k8s.io/kind)/pkg/apis/config/defaults/image.go")
  if docker image inspect "$upstream" >/dev/null 2>&1 || timeout 120 docker pull -q "$upstream" >/dev/null 2>&1; then
    node_image=$upstream
  else
    step "cannot pull $upstream: using an offline node image (built once, then cached)"
    node_image=$(bash tools/kind/node-image.sh)
  fi
fi
step "node image $node_image"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
repository=msp-operator.io/msp-operator
tag=$version-e2e
next_tag=$version-e2e-next
bash tools/image/build.sh "$repository:$tag" >/dev/null
docker tag "$repository:$tag" "$repository:$next_tag"
step "operator image $repository:$tag (and :$next_tag)"

kubeconfig=$cache_root/kind/$name.kubeconfig
"$kind" delete cluster --name "$name" >/dev/null 2>&1 || true
cleanup() {
  if [ -n "${KEEP_CLUSTER:-}" ]; then
    echo "e2e-kind: kept cluster $name (kubeconfig $kubeconfig); delete it with: $kind delete cluster --name $name" >&2
  else
    "$kind" delete cluster --name "$name" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
"$kind" create cluster --name "$name" --image "$node_image" --config tools/kind/cluster.yaml \
  --kubeconfig "$kubeconfig" --wait 180s
"$kind" load docker-image --name "$name" "$repository:$tag" "$repository:$next_tag"
step "cluster $name ready, image loaded"

export MSP_TEST_KUBECONFIG=$kubeconfig KUBEBUILDER_ASSETS=$controlplane
MSP_E2E_IMAGE=$repository:$tag MSP_E2E_NEXT_TAG=$next_tag \
  cargo test --all-features --test in_cluster -- --ignored --nocapture
step "in-cluster tests passed"

cargo test --all-features --tests --no-fail-fast
step "integration suite against kind passed"
