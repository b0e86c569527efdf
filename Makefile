# `make setup` creates .venv and installs karmma with pinned dependencies (the full install:
# core + [train] + [dev] + [ros]); `make test` lints (ruff), checks the light install and runs the
# whole test suite (CI); `make test-fast` skips the end-to-end tests (marker e2e) for the edit
# loop; `make format` rewrites the code as the lint expects; `make test-light` installs the
# light (deployment) install alone in .venv-light and checks `karmma predict` there.
PYTHON ?= python3.11
VENV   ?= .venv
LIGHT_VENV ?= .venv-light
PIP     = $(VENV)/bin/pip

.PHONY: setup lint format test test-fast test-light
setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[train,dev,ros]"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint test-light
	$(VENV)/bin/python -m pytest -q

# The core dependencies only (no torch), in a fresh venv; predictions must match the full install's.
test-light:
	rm -rf $(LIGHT_VENV) build  # build/: setuptools leaves old modules there
	$(PYTHON) -m venv $(LIGHT_VENV)
	$(LIGHT_VENV)/bin/pip install --quiet ".[ros]"
	$(VENV)/bin/python scripts/light_install_check.py $(LIGHT_VENV)

test-fast:
	$(VENV)/bin/python -m pytest -q -m "not e2e"
