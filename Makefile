# The two commands of the README, and the steps they are made of. Each step installs what
# it needs, so a fresh machine with only Rust and the package registries works.

CARGO ?= cargo

# Steps that do not depend on each other (RustyVault's build, the lints, the npm packages)
# run side by side on CI's two cores: a fresh `make test` took 28.8 minutes one at a time,
# 26 this way. Their output lines interleave.
MAKEFLAGS += --jobs=2
WASM_DIR := target/wasm/wasm32-wasip2/release
CONNECTORS := junction-http junction-github
OAUTH_SERVER := tests/servers/oauth
TOOLS := target/tools
RVAULT := $(TOOLS)/bin/rvault
RVAULT_VERSION := 0.2.1
SCHEMATHESIS := $(TOOLS)/schemathesis/bin/st
SCHEMATHESIS_VERSION := 4.32.5

.PHONY: run test setup test-servers test-tools connectors lint bench

DATA_DIR ?= junction-data

## run: build the junction binary and the first-party connectors, and run the service on
## the embedded store in $(DATA_DIR) (created on first start) with those connectors loaded.
run: connectors
	$(CARGO) build --release -p junction
	./target/release/junction serve --data-dir $(DATA_DIR) \
		--connectors $(WASM_DIR)/junction_http.wasm:$(WASM_DIR)/junction_github.wasm

## test: the whole suite, as CI runs it: formatting, lints, unit and end-to-end tests, then
## schemathesis against the service built by the tests (tests/schemathesis/run.sh).
test: setup test-servers test-tools lint
	$(CARGO) test --workspace --all-targets
	ST=$(SCHEMATHESIS) tests/schemathesis/run.sh target/debug/junction \
		$(WASM_DIR)/junction_http.wasm:$(WASM_DIR)/junction_github.wasm:$(WASM_DIR)/probe.wasm

## setup: the WebAssembly target connectors are built for.
setup:
	rustup target add wasm32-wasip2

## test-servers: the npm packages of the OAuth 2.0 server the tests start (exactly those of
## its package-lock.json; reinstalled only when that file or package.json is newer than the
## installed tree).
test-servers: $(OAUTH_SERVER)/node_modules/.package-lock.json

$(OAUTH_SERVER)/node_modules/.package-lock.json: $(OAUTH_SERVER)/package.json $(OAUTH_SERVER)/package-lock.json
	npm ci --prefix $(OAUTH_SERVER) --no-audit --no-fund

## test-tools: the other programs the tests start, each installed only when missing
## (schemathesis too, and curl for its seeding):
## RustyVault (`rvault`, a server of the HashiCorp Vault HTTP API, into $(TOOLS), with the
## OpenSSL headers it needs from the system's packages), tinyproxy (a forward HTTP proxy,
## a system package), and the openssl command (test certificates, a TLS server).
## RustyVault is a debug build, enough for the tests, except for the regex crates:
## unoptimised, they made enabling AppRole take 0.5 s of every server's start-up.
test-tools: $(RVAULT) $(SCHEMATHESIS)
	command -v tinyproxy >/dev/null || (apt-get update -qq && apt-get install -y -qq tinyproxy)
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl)
	command -v curl >/dev/null || (apt-get update -qq && apt-get install -y -qq curl)

$(RVAULT):
	pkg-config --exists openssl || (apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config)
	$(CARGO) install rusty_vault --version $(RVAULT_VERSION) --locked --debug --root $(TOOLS) \
		$(foreach crate,regex regex-automata regex-syntax,--config 'profile.dev.package.$(crate).opt-level=3')

## schemathesis, pinned, in a virtual environment of its own (from the Python package index).
$(SCHEMATHESIS):
	python3 -m venv $(TOOLS)/schemathesis
	$(TOOLS)/schemathesis/bin/pip install --quiet schemathesis==$(SCHEMATHESIS_VERSION)

connectors: setup
	CARGO_PROFILE_RELEASE_LTO=thin $(CARGO) build --release --target wasm32-wasip2 --target-dir target/wasm $(addprefix -p ,$(CONNECTORS))

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: the isolated-invocation benchmark (p50/p99, wasm beside native), an expired
## OAuth token under 1,000 concurrent invocations (one token request, the added latency),
## 10,000 invocations of a connection whose API key lives in a vault (one vault read,
## the cost of a cache hit), loading components compiled vs from precompiled artifacts,
## and the egress policy's check of resolved addresses (per check, per resolve, per connect).
bench: setup test-servers $(RVAULT)
	$(CARGO) bench -p junction-tests --bench invoke
	$(CARGO) bench -p junction-tests --bench oauth
	$(CARGO) bench -p junction-tests --bench vault
	$(CARGO) bench -p junction-tests --bench catalog
	$(CARGO) bench -p junction-tests --bench egress
