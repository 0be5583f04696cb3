# One venv for everything: .venv, created on first use, reinstalled when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: test lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## test: the whole suite (sandboxes, hooks, operators via dag.test(), reliability matrix)
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

## lint: ruff (lint + format check) and mypy
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .airflow-home .artifacts build dist *.egg-info
