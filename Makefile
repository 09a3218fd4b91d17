# Two commands matter: `make run` and `make test`. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-e2e lint lint-deploy demo bench install clean

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
test: $(STAMP) lint lint-deploy
	$(BIN)/python -m pytest -ra

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
