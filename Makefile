# `make setup` creates .venv and installs karmma with pinned dependencies; `make test` lints
# (ruff) and runs the whole test suite (CI); `make test-fast` skips the end-to-end tests
# (marker e2e) for the edit loop; `make format` rewrites the code as the lint expects.
PYTHON ?= python3.11
VENV   ?= .venv
PIP     = $(VENV)/bin/pip

.PHONY: setup lint format test test-fast
setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev]"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(VENV)/bin/python -m pytest -q

test-fast:
	$(VENV)/bin/python -m pytest -q -m "not e2e"
