#!/usr/bin/env bash
# Runs the whole suite against a kind cluster instead of the local control
# plane. Needs Docker, kind and kubectl on PATH (not available on the machine
# this project is developed on, so this path is exercised by the GitHub
# Actions workflow .github/workflows/e2e-kind.yml).
#
# The tests install the CRDs, the operator's ClusterRole, the delegable role
# catalog and the admission policies themselves, and run the operator
# in-process as the user `msp-operator` (by impersonation), so they need only
# an admin kubeconfig.
#
# Usage: tests/e2e/kind.sh [cluster-name]
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:-msp-operator-e2e}
image=${KIND_NODE_IMAGE:-kindest/node:v1.33.1}   # the oldest supported minor
kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"; [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$name"' EXIT

kind create cluster --name "$name" --image "$image" --kubeconfig "$kubeconfig" --wait 120s
KUBECONFIG=$kubeconfig kubectl apply --server-side -f crds/
KUBECONFIG=$kubeconfig kubectl apply --server-side -f deploy/
MSP_TEST_KUBECONFIG=$kubeconfig make test
