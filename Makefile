# envmon — the few entry points everyone uses.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install lint test bench demo clean

help:
	@echo "make test   - install what the tests need, lint, run the whole suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - slow, opt-in benchmarks (results in bench/RESULTS.md)"
	@echo "make demo   - arrives with the collectors (issue 3); see README"

# A fresh Debian machine as root may lack the venv module: install it first.
$(BIN)/python:
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || (apt-get update && apt-get install -y python3-venv)
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.replay_bench

demo:
	@echo "envmon demo arrives with the collectors (issue 3)."
	@echo "Until then, try: $(BIN)/envmon check-config deploy/examples/site.yaml"
	@exit 1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
