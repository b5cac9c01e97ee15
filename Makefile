# One entry point for developers and CI: `make check` runs exactly what CI runs.
# Each target first checks the Debian tools it needs with .ci/system-packages: as root the missing ones are
# installed, otherwise make stops with the command to run. `make test SYSTEM_PACKAGES='.ci/system-packages
# --no-install'` only checks.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES ?= .ci/system-packages

.PHONY: install demo test check lint types bench broker emulator clean \
	system-packages-broker system-packages-demo system-packages-test system-packages-browser

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) $(SYSTEM_PACKAGES) venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,model,demo]'
	touch $(STAMP)

# Checked before the virtualenv is built, so a missing tool is reported before minutes of pip.
system-packages-broker system-packages-demo system-packages-test system-packages-browser:
	@PYTHON=$(PYTHON) $(SYSTEM_PACKAGES) $(@:system-packages-%=%)

install: $(STAMP)

demo: system-packages-demo $(STAMP)
	$(BIN)/moderation-worker demo

# The review console's browser tests drive Debian's chromium.
test: system-packages-test system-packages-browser $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check worker tests bench
	$(BIN)/ruff format --check worker tests bench

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: system-packages-broker $(STAMP)
	$(BIN)/python -m bench

# The chaos run (docs/reliability.md): replicas, broker and analyzer faults, judged by an independent ledger.
.PHONY: chaos chaos-short
chaos: system-packages-broker $(STAMP)
	$(BIN)/python -m tests.chaos

chaos-short: system-packages-broker $(STAMP)
	$(BIN)/python -m tests.chaos --short

broker: system-packages-broker $(STAMP)
	$(BIN)/moderation-worker dev broker

emulator: $(STAMP)
	$(BIN)/moderation-worker dev emulator

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
