# msp-operator — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
# The crate version: the image tag and the chart's version/appVersion.
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

.PHONY: fuzz chaos bench all build test lint fmt-check clippy controlplane-bins controlplane crds run help helm-bin chart-crds image image-local e2e-kind kind-node-image

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

clippy: ## clippy -D warnings, with default features and with every feature (otlp)
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

lint: fmt-check clippy ## cargo fmt --check and clippy -D warnings

test: lint controlplane-bins helm-bin ## Everything CI checks: lint, unit tests, real-API-server tests
	MSP_HELM="$${MSP_HELM:-$$(bash tools/helm/install.sh)}" $(CARGO) test --workspace --all-features --no-fail-fast

helm-bin: ## Install the pinned Helm into ~/.cache/msp-operator (once) and print its path
	@bash tools/helm/install.sh

chart-crds: ## Copy crds/ and deploy/ into the chart (tests/helm.rs fails when the copies differ)
	rm -f charts/msp-operator/files/crds/*.yaml charts/msp-operator/files/deploy/*.yaml
	cp crds/*.yaml charts/msp-operator/files/crds/
	cp deploy/*.yaml charts/msp-operator/files/deploy/

image: ## Build the container image msp-operator:<crate version> (needs a Docker engine)
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker is not installed; the image needs a Docker engine (or build the Dockerfile with another OCI builder)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is reachable (\`docker info\` failed); start one or set DOCKER_HOST" >&2; exit 1; }
	docker build -t msp-operator:$(VERSION) .

image-local: ## Build msp-operator:<crate version> from a release build on this host (no registry needed)
	bash tools/image/build.sh msp-operator:$(VERSION)

kind-node-image: ## Build (or find cached) the offline kind node image, for machines that cannot pull kindest/node
	@bash tools/kind/engine.sh
	bash tools/kind/node-image.sh

e2e-kind: ## The kind tier: image, kind cluster, chart in cluster, the suite against it (provisions Docker/kind as needed)
	bash tests/e2e/kind.sh

FUZZ_SECONDS ?= 60
fuzz: ## Run each cargo-fuzz target for FUZZ_SECONDS (needs the nightly toolchain and cargo-fuzz; installed if missing)
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	cd fuzz && for target in delegability decide names; do \
	  $(CARGO) +nightly fuzz run -O $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

chaos: controlplane-bins ## Fault scenarios at full size (200 Delegations, 50 kills; MSP_CHAOS_SCALE=N to change)
	mkdir -p target; MSP_CHAOS_SCALE=$${MSP_CHAOS_SCALE:-10} $(CARGO) test --all-features --test faults -- --nocapture --test-threads 1 2>&1 | tee target/chaos.log | grep -oE 'faults: .*|test result.*|panicked.*|FAILED'; status=$${PIPESTATUS[0]}; echo "full output: target/chaos.log"; exit $$status

bench: controlplane-bins ## Convergence benchmark at 200, 1,000 and 4,000 Delegations (BENCH_ARGS="--sizes 100" for a quick run)
	$(CARGO) bench --bench convergence -- $(BENCH_ARGS)

controlplane: controlplane-bins ## Run a local control plane in the foreground (reused by `make run`)
	$(CARGO) run -q -p msp-testenv --bin msp-dev -- up

run: controlplane-bins ## Control plane + CRDs + examples + the operator in the foreground
	$(CARGO) build -q --bin msp-operator --bin kubectl-msp
	$(CARGO) run -q -p msp-testenv --bin msp-dev -- run --operator target/debug/msp-operator
