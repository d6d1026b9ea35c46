# Two commands for a fresh machine: `make demo` and `make test`. Everything else is optional.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
AIRFLOW_HOME_DEMO ?= $(CURDIR)/.demo/airflow-home
ROWS ?= 1000000
PYTEST_ARGS ?=
# the lowest versions of the data libraries that pyproject.toml declares, in a folder put first on sys.path
FLOOR := $(VENV)/floor
FLOOR_PYTEST_ARGS ?= -q -p no:cacheprovider

.PHONY: install lint test demo airflow bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "make: Python >= 3.11 is needed: run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]' || { echo "make: installing the provider with its test extra failed (see above); the package index must be reachable" >&2; exit 1; }
	rm -rf airflow_batch_provider.egg-info
	touch $@

$(FLOOR)/.installed: $(VENV)/.installed scripts/floor_requirements.py
	rm -rf $(FLOOR)
	$(PY) scripts/floor_requirements.py > $(VENV)/floor-requirements.txt
	$(VENV)/bin/pip install -q --no-deps --target $(FLOOR) -r $(VENV)/floor-requirements.txt
	touch $@

install: $(VENV)/.installed

## make lint: ruff (lint + format), mypy over the package; import layering is a test (tests/unit/test_architecture.py)
lint: install
	$(VENV)/bin/ruff check airflow_batch_provider tests benchmarks scripts dags
	$(VENV)/bin/ruff format --check airflow_batch_provider tests benchmarks scripts dags
	$(VENV)/bin/mypy airflow_batch_provider

## make test: lint, then the whole suite, then the unit tests once more on the lowest
## pandas/numpy/pyarrow/psutil/scikit-learn that pyproject.toml declares
test: install $(FLOOR)/.installed lint
	$(PY) -m pytest $(PYTEST_ARGS)
	@echo "== unit tests on the declared floors: $$(tr '\n' ' ' < $(VENV)/floor-requirements.txt)"
	PYTHONPATH=$(CURDIR)/$(FLOOR) $(PY) -m pytest $(FLOOR_PYTEST_ARGS) tests/unit

## make demo: SQLite Airflow + local storage + 1,000,000 generated rows, runs dags/example_batch_job.py
demo: install
	$(PY) scripts/demo.py --home $(AIRFLOW_HOME_DEMO) --rows $(ROWS)

## make airflow: the Airflow UI with the example DAGs on 127.0.0.1 (Ctrl-C stops it)
airflow: install
	$(PY) scripts/local_airflow.py --home $(AIRFLOW_HOME_DEMO) --dags dags

## make bench: the engine benchmark (prints a table, writes benchmarks/results/engine.json)
bench: install
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf .demo .pytest_cache airflow_batch_provider.egg-info
