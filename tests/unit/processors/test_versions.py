"""Changing kernels or semantics never lets an old checkpoint resume under new code: the standard processors'
``version``, the provider's version and (for polars frames) polars' version are in the job fingerprint."""

from __future__ import annotations

import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.runner import _versions, fingerprint_of
from airflow_batch_provider.engine.textformats import TextOptions
from airflow_batch_provider.exceptions import ChunkFailedError
from airflow_batch_provider.processors.anomaly_detection import AnomalyDetectionProcessor
from airflow_batch_provider.processors.data_profiling import DataProfilingProcessor
from airflow_batch_provider.processors.data_quality import DataQualityProcessor
from airflow_batch_provider.processors.feature_engineering import FeatureEngineeringProcessor
from airflow_batch_provider.processors.registry import resolve_processor
from tests.unit.processors.test_data_profiling import _FlakyProfiling, source  # noqa: F401


class _OldProfiling(_FlakyProfiling):
    """The profiling processor as version 1 wrote its checkpoints (before the Arrow kernels)."""

    version = "1"


def test_standard_processor_versions_were_bumped_with_the_kernels():
    assert DataProfilingProcessor.version == "5" and DataQualityProcessor.version == "3"
    assert AnomalyDetectionProcessor.version == "3"  # 2: float32 clipping; 3: Arrow chunks
    assert FeatureEngineeringProcessor.version == "3"  # 2: the defaults; 3: Arrow chunks and kernels


def test_a_checkpoint_written_by_an_older_processor_version_restarts_clean(source, tmp_path):  # noqa: F811
    flag = tmp_path / "flag"
    flag.write_text("1")
    _FlakyProfiling.flag = flag
    cfg = {"batch_size": 150, "max_concurrent_batches": 2, "retry_attempts": 0, "checkpoint_interval": 1}
    with pytest.raises(ChunkFailedError):
        run_batch_job(source, _OldProfiling(), config=cfg, output_path=tmp_path / "out")
    flag.unlink()
    new = run_batch_job(source, "data_profiling", config=cfg, output_path=tmp_path / "out")
    assert new.chunks_resumed == 0 and new.resume_decision.startswith("fingerprint changed")
    clean = run_batch_job(source, "data_profiling", config=cfg, output_path=tmp_path / "clean")
    assert new.report["columns"] == clean.report["columns"]


def test_the_fingerprint_names_the_provider_and_polars_for_polars_frames(source):  # noqa: F811
    versions = _versions()
    assert versions.get("airflow-batch-provider")

    def fn(frame, ctx):
        return None

    files = []
    as_pandas = fingerprint_of(files, resolve_processor(fn), TextOptions())
    as_polars = fingerprint_of(files, resolve_processor(fn, input_format="polars"), TextOptions())
    assert as_pandas != as_polars
    from airflow_batch_provider.engine import runner

    assert "polars" in runner._versions_for(resolve_processor(fn, input_format="polars"))
    assert "polars" not in runner._versions_for(resolve_processor(fn))
