# The two commands a newcomer needs: `make demo` and `make test`. Both run the setup first.
# PYTEST_ARGS adds pytest options (CI: JUnit and coverage reports).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test lint unit integration e2e bench format clean

setup:
	@bash scripts/setup.sh

# `make demo DEMO_PORT=9000` runs the sandbox on another port (default 8929).
DEMO_PORT ?= 8929

demo: setup
	$(BIN)/runnerctl demo --port $(DEMO_PORT)

lint: setup
	$(BIN)/ruff format --check provisioner tests benchmarks
	$(BIN)/ruff check provisioner tests benchmarks
	$(BIN)/mypy
	@if [ -d playbooks ]; then \
		$(BIN)/yamllint -s -c playbooks/.yamllint playbooks/ && (cd playbooks && $(CURDIR)/$(BIN)/ansible-lint --offline -q); \
	fi

test: lint
	$(BIN)/pytest tests

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: setup
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

format: setup
	$(BIN)/ruff format provisioner tests benchmarks
	$(BIN)/ruff check --fix provisioner tests benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
