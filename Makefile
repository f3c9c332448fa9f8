# The two commands of the README, and the steps they are made of. Each step installs what
# it needs, so a fresh machine with only Rust and the package registries works.

CARGO ?= cargo
WASM_DIR := target/wasm/wasm32-wasip2/release
CONNECTORS := junction-http junction-github

.PHONY: run test setup connectors lint bench

DATA_DIR ?= junction-data

## run: build the junction binary and the first-party connectors, and run the service on
## the embedded store in $(DATA_DIR) (created on first start) with those connectors loaded.
run: connectors
	$(CARGO) build --release -p junction
	./target/release/junction serve --data-dir $(DATA_DIR) \
		--connectors $(WASM_DIR)/junction_http.wasm:$(WASM_DIR)/junction_github.wasm

## test: the whole suite, as CI runs it: formatting, lints, unit and end-to-end tests.
test: setup lint
	$(CARGO) test --workspace --all-targets

## setup: the WebAssembly target connectors are built for.
setup:
	rustup target add wasm32-wasip2

connectors: setup
	CARGO_PROFILE_RELEASE_LTO=thin $(CARGO) build --release --target wasm32-wasip2 --target-dir target/wasm $(addprefix -p ,$(CONNECTORS))

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: the isolated-invocation benchmark (p50/p99, wasm beside native).
bench: setup
	$(CARGO) bench -p junction-tests --bench invoke
