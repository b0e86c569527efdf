# Two commands: `make setup` creates .venv and installs karmma with pinned
# dependencies; `make test` runs the whole test suite.
PYTHON ?= python3.11
VENV   ?= .venv
PIP     = $(VENV)/bin/pip

.PHONY: setup test
setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev]"

test:
	$(VENV)/bin/python -m pytest -q
