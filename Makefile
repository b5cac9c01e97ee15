# One entry point for developers and CI: `make check` runs exactly what CI runs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test check lint types bench broker emulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,model,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/moderation-worker demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check worker tests bench
	$(BIN)/ruff format --check worker tests bench

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: $(STAMP)
	$(BIN)/python -m bench

# The chaos run (docs/reliability.md): replicas, broker and analyzer faults, judged by an independent ledger.
.PHONY: chaos chaos-short
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos

chaos-short: $(STAMP)
	$(BIN)/python -m tests.chaos --short

broker: $(STAMP)
	$(BIN)/moderation-worker dev broker

emulator: $(STAMP)
	$(BIN)/moderation-worker dev emulator

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
