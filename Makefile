# Two commands matter: `make run` and `make test`. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ASYNCAPI_PARSER := tools/asyncapi/node_modules/@asyncapi/parser/package.json

.PHONY: run test test-unit test-integration test-e2e lint lint-deploy demo bench install clean contracts

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## run: the embedded broker + the four services on ports 8001-8004, until Ctrl-C
run: $(STAMP)
	LOG_FORMAT=$${LOG_FORMAT:-console} $(BIN)/python -m devstack --workdir var/run

## demo: replay The Carpentries' workshop records through the services and print the reports
demo: $(STAMP)
	$(BIN)/python -m demo --workdir var/demo $(DEMO_ARGS)

## bench: the pipeline against the raw Kafka client ceiling (not part of make test); BENCH_ARGS=--full for 1M
bench: $(STAMP)
	$(BIN)/python -m bench --workdir var/bench $(BENCH_ARGS)

## test: architecture contracts, then unit, integration and end-to-end tests
test: $(STAMP) $(ASYNCAPI_PARSER) lint lint-deploy
	$(BIN)/python -m pytest -ra

## contracts: regenerate the published JSON Schemas (contracts/v1) and AsyncAPI documents (asyncapi/)
contracts: $(STAMP)
	$(BIN)/python -m devstack.contracts
	ILT_AUTH=disabled $(BIN)/python -m devstack.asyncapi

# the official AsyncAPI parser (npm) the tests validate asyncapi/*.yaml with; skipped where there is no Node
$(ASYNCAPI_PARSER): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --prefix tools/asyncapi && touch $@; \
	else echo "npm not found: the AsyncAPI documents will not be validated (the test says so)"; fi

lint: $(STAMP)
	$(BIN)/lint-imports

## lint-deploy: compose file against the Compose specification, k8s manifests (offline schemas), Dockerfiles
lint-deploy: $(STAMP)
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml
	$(BIN)/hadolint deploy/*/Dockerfile

test-unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -ra tests/integration

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -ra tests/e2e

clean:
	rm -rf var .pytest_cache
