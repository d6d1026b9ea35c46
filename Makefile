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

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "make: Python >= 3.11 is needed: run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	touch $@

# everything make test needs (the provider, editable, with its test extra); also satisfies the demo's needs
$(VENV)/.installed: pyproject.toml | $(VENV)/.created
	$(VENV)/bin/pip install -q -e '.[test]' || { echo "make: installing the provider with its test extra failed (see above); the package index must be reachable" >&2; exit 1; }
	rm -rf airflow_batch_provider.egg-info
	touch $@ $(VENV)/.installed-demo

# what make demo needs: the provider and its runtime dependencies (Airflow, pandas, pyarrow ...), no test extra;
# the same venv, so make test afterwards only adds the test extra
$(VENV)/.installed-demo: pyproject.toml | $(VENV)/.created
	$(VENV)/bin/pip install -q -e . || { echo "make: installing the provider failed (see above); the package index must be reachable" >&2; exit 1; }
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
## (installs the provider and its runtime dependencies only, not the test extra)
demo: $(VENV)/.installed-demo
	$(PY) scripts/demo.py --home $(AIRFLOW_HOME_DEMO) --rows $(ROWS)

## make airflow [DAGS=my_dags]: the Airflow UI on 127.0.0.1 with the example DAGs (dags/), or with your own
## DAGs folder (Ctrl-C stops it). my_dags/ is yours: no test reads it.
DAGS ?= dags
airflow: $(VENV)/.installed-demo
	$(PY) scripts/local_airflow.py --home $(AIRFLOW_HOME_DEMO) --dags $(DAGS)

## make bench: the engine benchmark (prints a table, writes benchmarks/results/engine.json)
bench: install
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf .demo .pytest_cache airflow_batch_provider.egg-info
