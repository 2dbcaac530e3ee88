# Commands of the gateway; see README.md.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.dev-installed
LOADTEST_INSTALLED := $(VENV)/.loadtest-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install dev run test lint fmt check bench loadtest clean

install: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	@test -n "$(PYTHON)" || (echo "Python 3.11+ is required" >&2; exit 1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e .
	touch $@

dev: $(DEV_INSTALLED)

$(DEV_INSTALLED): $(INSTALLED)
	$(PIP) install -e '.[dev]'
	touch $@

run: install
	$(BIN)/gateway serve --config deploy/demo.yaml

test: dev
	scripts/ensure-chromium.sh
	$(BIN)/pytest

lint: dev
	$(BIN)/ruff format --check gateway tests bench scripts
	$(BIN)/ruff check gateway tests bench scripts
	$(BIN)/mypy

fmt: dev
	$(BIN)/ruff format gateway tests bench scripts
	$(BIN)/ruff check --fix gateway tests bench scripts

check: lint test

bench: dev
	$(BIN)/python bench/overhead.py $(BENCH_ARGS)

$(LOADTEST_INSTALLED): $(INSTALLED)
	$(PIP) install -e '.[loadtest]'
	touch $@

loadtest: $(LOADTEST_INSTALLED)
	$(BIN)/python deploy/loadtest/run.py $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
