"""The static table of built-in processors, name lookup without heavy imports, and keyword checks."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from airflow_batch_provider.exceptions import BatchInputError, ProcessorParameterError
from airflow_batch_provider.processors import catalog
from airflow_batch_provider.processors.registry import (
    import_object,
    lookup,
    register_processor,
    registered_processors,
    resolve_processor,
    unregister_processor,
)
from tests.conftest import ROOT

STANDARD = (
    "airflow_batch_provider.processors.data_quality",
    "airflow_batch_provider.processors.data_profiling",
    "airflow_batch_provider.processors.feature_engineering",
    "airflow_batch_provider.processors.anomaly_detection",
)


@pytest.mark.parametrize("name", sorted(catalog.BUILTIN))
def test_the_static_table_matches_the_constructors(name):
    entry = catalog.BUILTIN[name]
    cls = import_object(entry.path)
    params = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert tuple(params) == entry.parameters, f"update catalog.BUILTIN[{name!r}]"
    assert cls.name == name and lookup(name) is cls


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_the_catalog_imports_nothing_heavy():
    _run(
        "import sys\n"
        "from airflow_batch_provider.processors import catalog\n"
        "assert catalog.declared_parameters('data_quality') == ('rules', 'quarantine_values')\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'sklearn', 'numpy', 'airflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )


def test_resolving_count_does_not_import_the_standard_processors():
    _run(
        "import sys\n"
        "from airflow_batch_provider.processors.registry import lookup, registered_processors, resolve_processor\n"
        "assert lookup('count').name == 'count'\n"
        "resolve_processor('passthrough')\n"
        "assert {'count', 'data_quality', 'anomaly_detection'} <= set(registered_processors())\n"
        f"loaded = [m for m in {STANDARD!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert 'sklearn' not in sys.modules\n"
    )


def test_register_unregister_and_builtins():
    def double(batch, context):
        return batch

    with pytest.raises(ValueError, match="built-in"):
        register_processor("count", double)
    register_processor("count", double, replace=True)
    try:
        assert lookup("count") is double and "count" in registered_processors()
    finally:
        unregister_processor("count")
    assert lookup("count").__name__ == "CountProcessor"  # back to the built-in
    register_processor("test_catalog_double", double)
    try:
        assert "test_catalog_double" in registered_processors()
    finally:
        unregister_processor("test_catalog_double")
    assert "test_catalog_double" not in registered_processors()


def enrich(batch, context, vat_rates, currency="EUR"):
    return batch


def takes_anything(batch, context, **kwargs):
    return batch


class Scaler:
    def __init__(self, column: str, factor: float = 1.0) -> None:
        self.column, self.factor = column, factor

    def process(self, chunk, ctx):  # pragma: no cover - never run here
        return None


def test_callable_keywords_are_checked_against_the_signature():
    resolve_processor(enrich, {"vat_rates": {}})
    with pytest.raises(ProcessorParameterError, match=r"\['vat_rate'\]; did you mean 'vat_rates'") as info:
        resolve_processor(enrich, {"vat_rate": {}})
    message = str(info.value)
    assert "tests.unit.processors.test_catalog.enrich" in message and "currency" in message
    assert isinstance(info.value, BatchInputError)
    with pytest.raises(ProcessorParameterError, match="missing a required argument: 'vat_rates'"):
        resolve_processor(enrich, {})
    resolve_processor(takes_anything, {"whatever": 1, "retries": 3})  # **kwargs: exempt


def test_class_and_import_path_keywords_are_checked():
    assert resolve_processor(Scaler, {"column": "x"}).factor == 1.0
    with pytest.raises(ProcessorParameterError, match="did you mean 'factor'"):
        resolve_processor(Scaler, {"column": "x", "facter": 2})
    with pytest.raises(ProcessorParameterError, match="did you mean 'bins'"):
        resolve_processor("data_profiling", {"bns": 3})
    with pytest.raises(ProcessorParameterError, match="test_catalog:enrich: .*did you mean 'vat_rates'"):
        resolve_processor("tests.unit.processors.test_catalog:enrich", {"vat_rate": 1})
    with pytest.raises(ProcessorParameterError, match="already an instance"):
        resolve_processor(Scaler("x"), {"factor": 2})


def test_did_you_mean():
    assert (
        catalog.did_you_mean("retires", ["retries", "retry_delay", "source"]) == "; did you mean 'retries'?"
    )
    assert catalog.did_you_mean("zzz", ["retries"]) == ""
