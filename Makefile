# msp-operator — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build test lint fmt-check clippy controlplane-bins controlplane crds run help

all: build

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the operator and the dev tools
	$(CARGO) build --workspace

controlplane-bins: ## Build (or find cached) etcd, kube-apiserver, kube-controller-manager, kubectl
	@if [ -z "$$MSP_TEST_KUBECONFIG" ]; then bash tools/controlplane/build.sh >/dev/null; fi

crds: ## Regenerate crds/ from the Rust types
	$(CARGO) run -q --bin msp-operator -- crds --output-dir crds

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy ## cargo fmt --check and clippy -D warnings

test: lint controlplane-bins ## Everything CI checks: lint, unit tests, real-API-server tests
	$(CARGO) test --workspace --no-fail-fast

controlplane: controlplane-bins ## Run a local control plane in the foreground (reused by `make run`)
	$(CARGO) run -q -p msp-testenv --bin msp-dev -- up

run: controlplane-bins ## Control plane + CRDs + examples + the operator in the foreground
	$(CARGO) build -q --bin msp-operator
	$(CARGO) run -q -p msp-testenv --bin msp-dev -- run --operator target/debug/msp-operator
