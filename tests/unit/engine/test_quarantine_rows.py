"""Unreadable rows of CSV / JSON Lines files are quarantined one by one, wherever they are.

Bad rows inside the spans the planner reads (the typing pass reads every row; the batch-size sample reads
the first rows; anomaly detection's fit sample reads chosen rows) do not fail the job within
``max_skipped_fraction``: each is listed in ``skipped/`` with its row and byte range, exactly once, the same
for any batch size, and the output is the clean rows'. Past the budget the job fails at once, naming the file,
the rows, their bytes and the fix.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.runner import JobResult
from airflow_batch_provider.exceptions import DataCorruptionError, JobCancelledError

ROWS = 1000
#: data rows (0-based) spoiled in each file: the first (the sizing sample and every planner span start
#: there), one inside a numeric column (the typing pass must still type it int64 / float64), one in the middle
#: and the last one
BAD = (0, 3, 517, ROWS - 1)


def clean_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(ROWS),
            "amount": [round(i * 1.25, 2) for i in range(ROWS)],
            "name": [f"n{i}" for i in range(ROWS)],
        }
    )


def write_csv(path: Path, bad: tuple[int, ...] = BAD) -> dict[int, tuple[int, int]]:
    """The CSV twin of :func:`clean_frame` with an invalid UTF-8 byte (0xFF) in each ``bad`` row (in
    ``amount`` for row 3, in ``name`` otherwise); returns each bad row's byte range (its whole line)."""
    lines = [b"id,amount,name\n"]
    for row in clean_frame().itertuples(index=False):
        amount, name = str(row.amount).encode(), row.name.encode()
        if row.id in bad:
            amount, name = (
                (amount[:1] + b"\xff" + amount[1:], name) if row.id == 3 else (amount, name + b"\xff")
            )
        lines.append(b"%d,%s,%s\n" % (row.id, amount, name))
    path.write_bytes(b"".join(lines))
    return _ranges(lines, bad, header=1)


def write_jsonl(path: Path, bad: tuple[int, ...] = BAD) -> dict[int, tuple[int, int]]:
    """The JSON Lines twin, an invalid UTF-8 byte inside the ``name`` string of each ``bad`` row."""
    lines = []
    for row in clean_frame().itertuples(index=False):
        name = row.name.encode() + (b"\xff" if row.id in bad else b"")
        lines.append(b'{"id": %d, "amount": %s, "name": "%s"}\n' % (row.id, str(row.amount).encode(), name))
    path.write_bytes(b"".join(lines))
    return _ranges(lines, bad, header=0)


def _ranges(lines: list[bytes], bad: tuple[int, ...], header: int) -> dict[int, tuple[int, int]]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return {r: (starts[header + r], starts[header + r + 1]) for r in bad}


def skipped(result: JobResult) -> list[dict]:
    entries = [json.loads((Path(result.output_uri) / p).read_text()) for p in result.extra["skipped"]]
    return sorted(entries, key=lambda e: e["start_row"])


def assert_quarantined(
    result: JobResult, path: Path, ranges: dict[int, tuple[int, int]], *, rows_out: bool = True
) -> None:
    """Exactly the bad rows, each once, with its own byte range; the budget counted them once."""
    entries = skipped(result)
    assert [(e["start_row"], e["stop_row"], e["rows"]) for e in entries] == [(r, r + 1, 1) for r in ranges]
    assert [tuple(e["byte_range"]) for e in entries] == list(ranges.values())
    assert {e["file"] for e in entries} == {str(path)} and {e["reason"] for e in entries} == {
        "data_corruption"
    }
    for e in entries:  # the reason, and the fix: the encoding (a number with a bad byte is not a number)
        assert f"data row {e['start_row'] + 1}" in e["error"]
        assert "UTF8" in e["error"] or "UTF-8" in e["error"] or "conversion error to double" in e["error"]
    assert result.extra["rows_skipped"] == len(ranges) == result.chunks_skipped
    assert result.rows_in == ROWS and (result.rows_out == ROWS - len(ranges) or not rows_out)


def expected_output(bad: tuple[int, ...] = BAD) -> pd.DataFrame:
    frame = clean_frame()
    return frame[~frame["id"].isin(bad)].reset_index(drop=True).astype({"name": object})


def read(result: JobResult) -> pd.DataFrame:
    return read_output(result.output_uri).astype({"name": object})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("batch_size", [7, 100, None])  # None: auto-tuned from a sample of the first rows
def test_bad_rows_in_the_sampled_spans_are_quarantined_within_the_budget(fmt, batch_size, tmp_path):
    path = tmp_path / f"data.{fmt}"
    ranges = (write_csv if fmt == "csv" else write_jsonl)(path)
    config = {"batch_size": batch_size, "auto_optimize": batch_size is None, "max_concurrent_batches": 2}
    result = run_batch_job(
        path,
        "passthrough",
        config=config,
        recovery={"max_skipped_fraction": 0.01},
        output_path=tmp_path / "out",
    )
    assert_quarantined(result, path, ranges)
    out = read(result)
    assert str(out["id"].dtype) == "int64" and str(out["amount"].dtype) == "float64"  # typed as if clean
    pd.testing.assert_frame_equal(out, expected_output())


def test_the_quarantine_is_the_same_for_any_batch_size(tmp_path):
    path = tmp_path / "data.csv"
    write_csv(path)
    runs = []
    for size in (1, 3, 250, ROWS):
        result = run_batch_job(
            path,
            "passthrough",
            config={"batch_size": size},
            recovery={"max_skipped_fraction": 0.01},
            output_path=tmp_path / f"out-{size}",
        )
        runs.append(([{k: e[k] for k in e if k != "error"} for e in skipped(result)], read(result)))
    for listing, frame in runs[1:]:
        assert listing == runs[0][0]
        pd.testing.assert_frame_equal(frame, runs[0][1])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_more_bad_rows_than_the_budget_fail_at_once_naming_file_rows_bytes_and_fix(fmt, tmp_path):
    path = tmp_path / f"data.{fmt}"
    ranges = (write_csv if fmt == "csv" else write_jsonl)(path)
    attempts = []
    with pytest.raises(DataCorruptionError) as caught:  # a BatchInputError: Airflow does not retry it either
        run_batch_job(
            path,
            "passthrough",
            config={"batch_size": 100, "retry_attempts": 3},
            recovery={"max_skipped_fraction": 0.002},  # 2 rows of 1000; 4 are bad
            output_path=tmp_path / "out",
            progress_callbacks=[lambda e: attempts.append(e.event_type)],
        )
    message = str(caught.value)  # rows 0 and 3 were quarantined (the budget), row 517 is one too many
    first, last = ranges[517]
    assert f"{path} rows 500-600 hold unreadable records: data row 518 (bytes {first}-{last})" in message
    assert "more than the 2 row(s) max_skipped_fraction" in message and "2 row(s) already skipped" in message
    assert "Fix the file, or raise recovery={'max_skipped_fraction': ...}" in message
    assert "retry" not in attempts  # not retried in the task


def test_the_default_budget_names_the_first_bad_row(tmp_path):
    path = tmp_path / "data.csv"
    ranges = write_csv(path, bad=(517,))
    with pytest.raises(
        DataCorruptionError, match=r"data row 518 \(bytes \d+-\d+\).*max_skipped_fraction=0\b"
    ):
        run_batch_job(path, "passthrough", config={"batch_size": 100}, output_path=tmp_path / "out")
    assert ranges[517][0] > 0


def test_a_bad_row_in_the_anomaly_fit_sample_is_quarantined_once(tmp_path):
    bad_path, clean_path = tmp_path / "bad.csv", tmp_path / "clean.csv"
    ranges = write_csv(bad_path)
    expected_output().to_csv(clean_path, index=False)
    kwargs = {
        "features": ["id", "amount"],
        "sample_size": 5 * ROWS,
        "contamination": 0.05,
    }  # every row is fitted
    clean = run_batch_job(
        clean_path, "anomaly_detection", config={"batch_size": 100}, output_path=tmp_path / "c", **kwargs
    )
    result = run_batch_job(
        bad_path,
        "anomaly_detection",
        config={"batch_size": 100},
        recovery={"max_skipped_fraction": 0.01},
        output_path=tmp_path / "out",
        **kwargs,
    )
    assert_quarantined(result, bad_path, ranges)
    # the fit saw the clean rows exactly: the scores are the clean file's
    pd.testing.assert_frame_equal(read_output(result.output_uri), read_output(clean.output_uri))


def test_a_statistics_pass_counts_the_bad_rows_once(tmp_path):
    bad_path, clean_path = tmp_path / "bad.csv", tmp_path / "clean.csv"
    ranges = write_csv(bad_path)
    expected_output().to_csv(clean_path, index=False)
    clean = run_batch_job(
        clean_path, "data_profiling", config={"batch_size": 100}, output_path=tmp_path / "c"
    )
    result = run_batch_job(
        bad_path,
        "data_profiling",
        config={"batch_size": 100},
        recovery={"max_skipped_fraction": 0.01},
        output_path=tmp_path / "out",
    )
    assert_quarantined(result, bad_path, ranges, rows_out=False)  # the statistics pass quarantined none
    assert result.report["columns"] == clean.report["columns"]


def test_resume_does_not_count_quarantined_rows_twice(tmp_path):
    path = tmp_path / "data.csv"
    ranges = write_csv(path)
    cancel = threading.Event()

    def cancel_after_the_first_checkpoints(event):
        if event.event_type == "checkpoint" and event.chunks_done >= 6:
            cancel.set()

    args = {"config": {"batch_size": 50, "checkpoint_interval": 2, "max_concurrent_batches": 1}}
    args |= {
        "recovery": {"max_skipped_fraction": 0.004},
        "output_path": tmp_path / "out",
    }  # 4 rows: all of them
    with pytest.raises(JobCancelledError):
        run_batch_job(
            path,
            "passthrough",
            progress_callbacks=[cancel_after_the_first_checkpoints],
            cancel_event=cancel,
            **args,
        )
    checkpoint = json.loads((tmp_path / "out" / "g0001" / "_checkpoint.json").read_text())
    assert checkpoint["counters"]["rows_skipped"] == 2  # rows 0 and 3, in the first chunk
    result = run_batch_job(path, "passthrough", **args)
    assert result.chunks_resumed >= 6
    assert_quarantined(result, path, ranges)
    pd.testing.assert_frame_equal(read(result), expected_output())


def test_the_search_finds_exactly_the_bad_records_in_any_window(tmp_path):
    import fsspec

    from airflow_batch_provider.engine.textformats import (
        TextOptions,
        find_bad_records,
        index_text_file,
        infer_text_schema,
    )

    fs, options = fsspec.filesystem("file"), TextOptions()
    bad = tuple(range(5, ROWS, 37))  # 27 rows
    path = tmp_path / "data.csv"
    ranges = write_csv(path, bad=bad)
    index = index_text_file(fs, str(path), "csv", options, stride=16)
    schema = infer_text_schema(fs, str(path), index, options, span_bytes=500)
    assert str(schema.field("amount").type) == "double"  # row 3 is not bad here: every number is clean
    found, complete = find_bad_records(fs, str(path), index, 0, ROWS, schema, options, limit=100)
    assert complete and [(b.row, (b.begin, b.end)) for b in found] == list(ranges.items())
    for start, stop in ((0, 1), (5, 6), (3, 300), (301, 777), (999, 1000)):
        window, complete = find_bad_records(fs, str(path), index, start, stop, schema, options, limit=100)
        assert complete and [b.row for b in window] == [r for r in bad if start <= r < stop]
    few, complete = find_bad_records(fs, str(path), index, 0, ROWS, schema, options, limit=3)
    assert not complete and len(few) == 4  # one more than the limit, then the search stops


def test_invalid_utf8_nested_in_a_json_record_is_found_by_halving(tmp_path):
    import fsspec

    from airflow_batch_provider.engine.textformats import (
        TextOptions,
        find_bad_records,
        index_text_file,
        infer_text_schema,
        read_text_rows,
    )

    fs, options = fsspec.filesystem("file"), TextOptions()
    path = tmp_path / "nested.jsonl"
    rows = [b'{"id": %d, "tags": ["a", "b%s"]}\n' % (i, b"\xff" if i == 61 else b"") for i in range(100)]
    path.write_bytes(b"".join(rows))
    index = index_text_file(fs, str(path), "jsonl", options, stride=8)
    schema = infer_text_schema(fs, str(path), index, options)
    with pytest.raises(DataCorruptionError, match=r"nested\.jsonl.*UTF-8"):  # never read in silently
        read_text_rows(fs, str(path), index, 0, 100, schema, options)
    found, complete = find_bad_records(fs, str(path), index, 0, 100, schema, options, limit=5)
    start = sum(map(len, rows[:61]))
    assert complete and [(b.row, b.begin, b.end) for b in found] == [(61, start, start + len(rows[61]))]
