# Two commands for a fresh machine: `make demo` and `make test`. Everything else is optional.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
AIRFLOW_HOME_DEMO ?= $(CURDIR)/.demo/airflow-home
ROWS ?= 1000000
PYTEST_ARGS ?=

.PHONY: install test demo airflow bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	rm -rf airflow_batch_provider.egg-info
	touch $@

install: $(VENV)/.installed

## make test: create the venv, install the provider with its test extra, run the whole suite
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

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
