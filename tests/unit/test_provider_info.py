"""Provider metadata: every dotted path imports, template_fields are real, config has defaults."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from airflow_batch_provider.get_provider_info import get_provider_info


def test_entry_point_points_at_get_provider_info():
    eps = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_batch_provider")
    ]
    assert len(eps) == 1 and eps[0].load() is get_provider_info
    info = get_provider_info()
    assert info["package-name"] == "airflow-batch-provider" and info["description"]


REQUIRED = {"DataQualityOperator": {"rules": [{"type": "not_null", "column": "a"}]}}


def test_every_operator_module_imports_and_template_fields_are_attributes():
    from airflow.sdk import BaseOperator

    operators = []
    for group in get_provider_info()["operators"]:
        for module_name in group["python-modules"]:
            module = importlib.import_module(module_name)
            operators += [
                c
                for _, c in inspect.getmembers(module, inspect.isclass)
                if issubclass(c, BaseOperator) and c.__module__ == module_name
            ]
    assert operators
    for cls in operators:
        params = {
            p
            for klass in cls.__mro__
            if "__init__" in vars(klass)
            for p in inspect.signature(klass.__init__).parameters
        }
        for field in cls.template_fields:
            assert field in params, f"{cls.__name__}.{field} is not a constructor parameter"
        assert isinstance(cls.template_fields, tuple)
        batch = hasattr(cls, "processor_class")  # BatchJobOperator and its subclasses
        extra = {"source": "/nowhere"} if batch else {}
        extra.update({"processor": "count"} if batch and cls.processor_class is None else {})
        extra.update(REQUIRED.get(cls.__name__, {}))
        op = cls(task_id=f"t_{cls.__name__}", **extra)
        for field in cls.template_fields:
            assert hasattr(op, field), f"{cls.__name__}.{field} is not an attribute"


def test_config_section_has_defaults_and_is_readable_by_airflow():
    options = get_provider_info()["config"]["batch_provider"]["options"]
    assert {"base_path", "conn_id", "default_batch_size", "progress_interval"} <= set(options)
    for name, option in options.items():
        assert "default" in option and option["description"], name
    from airflow.sdk import conf

    assert conf.get("batch_provider", "progress_interval") == "5"


def test_providers_list_shows_the_provider():
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list"], capture_output=True, text=True, timeout=120
    )
    assert "airflow-batch-provider" in out.stdout, out.stderr[-2000:]


def test_importing_the_package_is_light():
    code = (
        "import sys, airflow_batch_provider, airflow_batch_provider.config;"
        "heavy=[m for m in ('pandas','pyarrow','sklearn','airflow') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parsing_the_example_dags_imports_no_pandas_pyarrow_or_sklearn():
    """DAG files are parsed often: operators and the demo helper load heavy libraries only when a task runs."""
    dags = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "dags").glob("example_*.py"))
    code = (
        "import sys, runpy\n"
        f"for path in {dags!r}:\n"
        "    runpy.run_path(path)\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
