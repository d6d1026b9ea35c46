"""Operator keywords: unknown ones fail at DAG parse (built-ins) or at task start (callables), before any chunk."""

from __future__ import annotations

import textwrap

import pytest
from airflow.sdk import DAG, BaseOperator

from airflow_batch_provider.exceptions import ProcessorParameterError
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from airflow_batch_provider.operators.keywords import operator_arguments
from airflow_batch_provider.processors import catalog
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context


def test_a_misspelt_operator_argument_fails_at_parse_naming_the_close_match():
    with DAG("kw", schedule=None), pytest.raises(ProcessorParameterError) as info:
        BatchJobOperator(task_id="t", source="/x", processor="count", retires=3)
    message = str(info.value)
    assert "'retires'" in message and "did you mean 'retries'?" in message and "'count'" in message


def test_builtin_parameters_are_checked_at_parse_also_through_subclasses():
    with DAG("kw2", schedule=None):
        op = BatchJobOperator(task_id="ok", source="/x", processor="data_profiling", bins=5)
        assert op.processor_kwargs == {"bins": 5}
        with pytest.raises(ProcessorParameterError, match="did you mean 'top_k'"):
            DataProfilingOperator(task_id="p", source="/x", topk=3)
        with pytest.raises(ProcessorParameterError, match="'rulez'.*did you mean 'rules'"):
            BatchJobOperator(
                task_id="q", source="/x", processor="data_quality", processor_kwargs={"rulez": []}
            )


def test_no_builtin_parameter_is_also_an_operator_argument():
    operator = operator_arguments(BatchJobOperator)
    assert {"retries", "pool", "source", "config"} <= operator and "kwargs" not in operator
    for name, entry in catalog.BUILTIN.items():
        assert not set(entry.parameters) & operator, name
    assert operator_arguments(BaseOperator) < operator


def price(batch, context, pool=None, vat_rates=None):
    return batch


def test_a_name_both_operator_argument_and_processor_parameter_needs_processor_kwargs():
    with DAG("kw3", schedule=None):
        with pytest.raises(
            ProcessorParameterError, match=r"'pool' is both.*processor_kwargs=\{'pool': \.\.\.\}"
        ):
            BatchJobOperator(task_id="a", source="/x", processor=price, pool="batch_pool")
        op = BatchJobOperator(
            task_id="b", source="/x", processor=price, pool="batch_pool", processor_kwargs={"pool": "p"}
        )
        assert op.pool == "batch_pool" and op.processor_kwargs == {"pool": "p"}
        # an unknown keyword of a callable is checked when the task starts
        BatchJobOperator(task_id="c", source="/x", processor=price, vat_rate=0.2)


def test_a_dag_file_with_a_misspelt_keyword_is_an_import_error_naming_retries(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "typo_dag.py").write_text(
        textwrap.dedent(
            """
            from airflow.sdk import DAG
            from airflow_batch_provider.operators.batch import BatchJobOperator

            with DAG("typo_dag", schedule=None):
                BatchJobOperator(task_id="summary", source="/data", processor="count", retires=3)
            """
        )
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert "typo_dag" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "retires" in error and "did you mean 'retries'?" in error


def test_a_callable_with_an_unknown_keyword_fails_at_task_start_before_any_chunk(
    make_parquet, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    make_parquet(sample_frame(300), "a.parquet")
    ledger = tmp_path / "ledger"

    def enrich(batch, context, vat_rates):
        ledger.write_text("a chunk ran")
        return batch

    op = BatchJobOperator(
        task_id="job", source=str(tmp_path / "src"), processor=enrich, vat_rate={"EUR": 0.2}
    )
    with pytest.raises(BatchInputFailure, match=r"\['vat_rate'\]; did you mean 'vat_rates'") as info:
        op.execute(context(FakeTI(try_number=1)))
    assert isinstance(info.value.__cause__, ProcessorParameterError)
    assert not ledger.exists() and not (tmp_path / "base").exists()  # nothing planned, no chunk ran
