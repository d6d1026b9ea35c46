"""CSV and JSON Lines sources through run_batch_job: parallel chunk parsing equals a one-piece read."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import DataCorruptionError
from tests.conftest import sample_frame


@pytest.fixture
def frame():
    df = sample_frame(2_500, seed=11).drop(columns=["ts"])
    df["note"] = ['line one\nline two, "quoted"' if i % 97 == 0 else f"n{i}" for i in range(len(df))]
    return df


@pytest.mark.parametrize("batch_size", [333, 1024, 5000])
def test_csv_folder_in_chunks_equals_pandas(tmp_path, frame, batch_size):
    src = tmp_path / "csv"
    src.mkdir()
    frame.iloc[:1200].to_csv(src / "a.csv", index=False)
    frame.iloc[1200:].to_csv(src / "b.csv", index=False)
    result = run_batch_job(
        src, "passthrough", config={"batch_size": batch_size}, output_path=tmp_path / "out"
    )
    want = pd.concat([pd.read_csv(src / "a.csv"), pd.read_csv(src / "b.csv")], ignore_index=True)
    got = read_output(result.output_uri)
    assert result.rows_in == 2_500
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_jsonl_in_chunks_equals_pandas(tmp_path, frame):
    path = tmp_path / "data.jsonl"
    frame.to_json(path, orient="records", lines=True)
    result = run_batch_job(path, "passthrough", config={"batch_size": 700}, output_path=tmp_path / "out")
    pd.testing.assert_frame_equal(
        read_output(result.output_uri), pd.read_json(path, lines=True), check_dtype=False
    )


def test_semicolon_csv_needs_the_option(tmp_path, frame):
    path = tmp_path / "semi.csv"
    frame[["id", "x"]].to_csv(path, index=False, sep=";")
    result = run_batch_job(
        path,
        "count",
        config={"batch_size": 1000},
        output_path=tmp_path / "out",
        csv_options={"delimiter": ";"},
    )
    assert result.report["rows"] == 2_500 and set(result.report["nulls"]) == {"id", "x"}


def test_malformed_csv_row_names_file_and_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n8,9\n")
    with pytest.raises(DataCorruptionError, match=r"bad.csv"):
        run_batch_job(path, "passthrough", output_path=tmp_path / "out")
