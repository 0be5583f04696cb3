# One venv for everything: .venv, created on first use, reinstalled when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed-run

.PHONY: demo demo-notifications airflow test test-e2e test-lifecycle test-notifications test-distributed test-compat dist lint fmt clean smoke bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Runtime install for the demo: the package (editable) and its runtime deps only. A venv that already
# has the dev install is reused as is.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	{ echo "$(VENV) uses Python < 3.10; remove it and run: make demo PYTHON=python3.11"; exit 1; }
	@if [ -f $(DEV_STAMP) ] && [ $(DEV_STAMP) -nt pyproject.toml ]; then :; \
	else echo "Installing airflow-provider-orders and Apache Airflow into $(VENV) (first run only, a few minutes) ..."; \
	$(BIN)/python -m pip install -q -e . ; fi
	touch $@

## demo: run example_order_pipeline end to end with `airflow dags test` against both sandboxes
# dev/demo.py is a script of this checkout, not part of the installed package.
demo: $(RUN_STAMP)
	$(BIN)/python dev/demo.py $(DEMO_ARGS)

## demo-notifications: one ezCater order placed -> signed delivery -> receiver -> asset event -> DAG run -> accepted
demo-notifications: $(RUN_STAMP)
	$(BIN)/python dev/demo.py --notifications $(DEMO_ARGS)

## airflow: `airflow standalone` (UI on http://localhost:8080) with the example DAGs and the sandboxes
airflow: $(RUN_STAMP)
	$(BIN)/python dev/demo.py --standalone $(DEMO_ARGS)

## test: the whole suite (sandboxes, hooks, operators via dag.test(), reliability matrix)
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not e2e and not lifecycle and not notifications and not distributed" $(PYTEST_ARGS)

## test-e2e: trigger example_order_pipeline from the Airflow UI in headless Chromium (real Airflow + sandboxes)
test-e2e: $(DEV_STAMP)
	$(BIN)/python -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

## test-lifecycle: the lifecycle matrix (kills, clears, restarts) against a real Airflow, all cells at once
test-lifecycle: $(DEV_STAMP)
	$(BIN)/python -m pytest -m lifecycle tests/lifecycle $(PYTEST_ARGS)

## test-notifications: ezCater deliveries -> receiver plugin -> asset events -> runs -> accepts, in a real Airflow
test-notifications: $(DEV_STAMP)
	$(BIN)/python -m pytest -m notifications tests/notifications $(PYTEST_ARGS)

## test-distributed: CeleryExecutor (2 workers), PostgreSQL and Redis (Debian packages, local processes) under faults
test-distributed: $(DEV_STAMP)
	$(BIN)/python -m pytest -m distributed tests/distributed $(PYTEST_ARGS)

## dist: build the wheel and the sdist into dist/ and check them with twine
dist: $(DEV_STAMP)
	rm -rf dist build
	$(BIN)/python -m build --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*
	@ls -l dist

## test-compat: the core suite on the newest patch of Airflow 3.0, 3.1, 3.2 and 3.3, each in its own venv,
## against the wheel that `make dist` built (not the checkout): a file missing from the wheel fails here
COMPAT_MINORS ?= 3.0 3.1 3.2 3.3
test-compat: dist
	$(BIN)/python dev/compat.py $(COMPAT_MINORS) $(COMPAT_ARGS)

## lint: ruff (lint + format check) and mypy
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## smoke: registration and example DAG parsing on the LOWEST Airflow release pyproject declares (the
## wheel in its own venv, dependencies as of that release); test-compat covers the newest patch of each minor.
## No dag.test() here: Airflow 3.0.0's DAG has none.
AIRFLOW_MIN := $(shell sed -n 's/^ *"apache-airflow>=\([0-9.]*\)".*/\1/p' pyproject.toml)
smoke: dist
	$(BIN)/python dev/compat.py --suite tests/test_provider_info.py,tests/test_example_dags.py,tests/test_packaging.py,tests/test_version_compat.py --keyword "not order_pipeline" $(AIRFLOW_MIN)

## bench: import cost, requests per operation, deferred scale, hook overhead -> docs/benchmarks.md
# A venv of its own: the dbt-cloud provider (the import-cost comparison) must not leak into the tests.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run.py --output docs/benchmarks.md

fmt: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(BENCH_VENV) .venv-compat-* .airflow-home .artifacts build dist *.egg-info
