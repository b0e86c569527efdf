# `make setup` creates .venv and installs karmma with pinned dependencies; `make test` runs
# the whole test suite (CI); `make test-fast` skips the end-to-end tests (marker e2e) for
# the edit loop.
PYTHON ?= python3.11
VENV   ?= .venv
PIP     = $(VENV)/bin/pip

.PHONY: setup test test-fast
setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev]"

test:
	$(VENV)/bin/python -m pytest -q

test-fast:
	$(VENV)/bin/python -m pytest -q -m "not e2e"
