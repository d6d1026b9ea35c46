"""Long ids make short, deterministic folder names; a name too long for the filesystem is bad input (issue #18,
finding 6)."""

from __future__ import annotations

import errno
import os

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.failures import FailureClass, classify
from airflow_batch_provider.operators.batch import MAX_SEGMENT, BatchJobOperator, _segment
from airflow_batch_provider.operators.shards import sharded_job_folder
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, context

CJK_RUN_ID = "手动运行" * 7 + "批"  # 29 CJK characters: 261 bytes percent-encoded, over NAME_MAX (255)


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(300, seed=3), "a.parquet")
    return str(tmp_path / "src")


def test_a_run_id_of_29_cjk_characters_runs(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    assert len(CJK_RUN_ID) == 29
    op = BatchJobOperator(
        task_id="job", source=source, processor="passthrough", config=BatchConfig(batch_size=100)
    )
    summary = op.execute(context(FakeTI(run_id=CJK_RUN_ID)))
    folder = summary["output_uri"]
    run_segment = folder.split("/")[-3]
    assert run_segment == _segment(CJK_RUN_ID) and len(run_segment) <= MAX_SEGMENT
    assert run_segment.startswith("%E6%89%8B%E5%8A%A8") and "%~" in run_segment  # readable prefix + hash
    assert os.path.exists(os.path.join(folder, "_SUCCESS")) and summary["rows_out"] == 300
    again = BatchJobOperator(
        task_id="job", source=source, processor="passthrough", config=BatchConfig(batch_size=100)
    )
    assert (
        again.execute(context(FakeTI(run_id=CJK_RUN_ID, try_number=2)))["output_uri"] == folder
    )  # same folder


def test_sharded_job_folders_are_shortened_the_same_way(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    folder = sharded_job_folder(context(FakeTI(run_id=CJK_RUN_ID)), "g" * 300)
    assert all(len(part) <= MAX_SEGMENT for part in folder.split("/"))
    assert folder.split("/")[-2].startswith("g" * 70) and folder.endswith("/-1")


@pytest.mark.parametrize(
    "value", ["manual__2026-11-28T10:00:00+00:00", "a" * MAX_SEGMENT, "", ".", "..", -1, 7]
)
def test_short_segments_are_unchanged(value):
    from urllib.parse import quote

    expected = {"": "%", ".": "%2E", "..": "%2E%2E"}.get(value, quote(str(value), safe=""))
    assert _segment(value) == expected


def test_shortened_segments_are_distinct_and_stable():
    values = ["x" * 200 + str(i) for i in range(50)] + [CJK_RUN_ID, CJK_RUN_ID + "!"]
    names = [_segment(v) for v in values]
    assert len(set(names)) == len(values) and names == [_segment(v) for v in values]


def test_name_too_long_is_bad_input_and_not_retried(tmp_path, source):
    assert classify(OSError(errno.ENAMETOOLONG, "File name too long")) is FailureClass.DATA_CORRUPTION
    with pytest.raises(OSError) as info:  # an explicit output_path whose folder name is too long
        run_batch_job(source, "count", output_path=str(tmp_path / ("y" * 300)), records_path=False)
    assert info.value.errno == errno.ENAMETOOLONG
    assert classify(info.value) is FailureClass.DATA_CORRUPTION  # BatchRetryPolicy: fail now, no retry
