"""Row values never reach failure records, task logs or raised exceptions; identifiers do (issue #18, finding 2)."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import pytest

from airflow_batch_provider.cli import main
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.engine.redaction import Scrubber, log_row_values, scrub_message, scrub_traceback
from airflow_batch_provider.exceptions import BatchProviderError, DataCorruptionError

CARD = "4111111111111111"
PASSWORD = "Hunter2Secret!"
PLANTED = (CARD, PASSWORD, "Hunter2")
BAD_ROW = 12_000  # in the third chunk (the typing pass leaves a malformed record to the chunk holding it)
ROWS = 50_000


def write_csv(path: Path, bad_line: str) -> Path:
    """A payments CSV whose data row BAD_ROW + 1 (1-based) is ``bad_line``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("card,password,amount\n")
        for i in range(ROWS):
            fh.write(bad_line + "\n" if i == BAD_ROW else f"5{i:015d},pw{i},{i}\n")
    return path


def run_failing(
    tmp_path: Path, source: Path, csv_options: dict | None = None
) -> tuple[BaseException, list[dict]]:
    records = tmp_path / "_records"
    with pytest.raises(BatchProviderError) as info:
        run_batch_job(
            str(source),
            "passthrough",
            config={"batch_size": 5000, "max_concurrent_batches": 1, "retry_attempts": 0},
            output_path=str(tmp_path / "out"),
            records_path=str(records),
            csv_options=csv_options,
        )
    return info.value, list(FailureRecords(records).iter_records())


def assert_clean(text: str) -> None:
    for value in PLANTED:
        assert value not in text, f"{value!r} leaked into: {text[:2000]}"


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        (f"{CARD},{PASSWORD},99,extra", "Expected 3 columns, got 4: <text:"),  # pyarrow prints the whole row
        (f"{CARD},pw,{PASSWORD}", "invalid value <text:14>"),  # a conversion error quotes the value
    ],
    ids=["malformed row", "conversion error"],
)
def test_planted_values_stay_out_of_records_logs_and_exceptions(tmp_path, caplog, bad_line, reason):
    source = write_csv(tmp_path / "src" / "payments.csv", bad_line)
    caplog.set_level(logging.INFO, logger="airflow_batch_provider")
    # the whole file is typed, so a word in the amount column would make it text: declare it a number
    declared = {"column_types": {"amount": "int64"}} if "invalid value" in reason else None
    err, records = run_failing(tmp_path, source, declared)
    assert isinstance(err, DataCorruptionError)
    # the failure record: no values, but the file, the row and pyarrow's reason
    (rec,) = records
    assert_clean(json.dumps(rec))
    assert (
        str(source) in rec["error"] and f"data row {BAD_ROW + 1}" in rec["error"] and reason in rec["error"]
    )
    assert rec["chunk"] == [0, 10_000, 15_000]
    # the task log: every line the job logged
    assert caplog.records and f"data row {BAD_ROW + 1}" in caplog.text
    assert_clean(caplog.text)
    # what Airflow prints when the task fails: the exception with its whole chain (the worker's traceback too)
    assert_clean("".join(traceback.format_exception(err)))
    assert str(source) in str(err)


def test_log_row_values_shows_them_in_the_log_but_never_in_the_record(tmp_path, caplog):
    source = write_csv(tmp_path / "src" / "payments.csv", f"{CARD},{PASSWORD},99,extra")
    caplog.set_level(logging.INFO, logger="airflow_batch_provider")
    with log_row_values(True):
        err, records = run_failing(tmp_path, source)
    assert CARD in caplog.text and PASSWORD in str(err)
    assert_clean(json.dumps(records))


def _bad_kwargs(batch, ctx, vat_rate):
    def apply_rates(frame, rate):
        return frame

    return apply_rates(batch, rate=vat_rate, **{"vat_rate": vat_rate})  # TypeError naming 'vat_rate'


def _unknown_kwarg(batch, ctx, vat_rate):
    raise TypeError("apply_discount() got an unexpected keyword argument 'discount'")


@pytest.mark.parametrize(
    "processor, name", [(_bad_kwargs, "vat_rate"), (_unknown_kwarg, "discount")], ids=["known", "context"]
)
def test_an_unexpected_keyword_is_named_in_the_record_and_by_the_cli(tmp_path, capsys, processor, name):
    source = write_csv(tmp_path / "src" / "ok.csv", "1,pw,1")
    with pytest.raises(BatchProviderError):
        run_batch_job(
            str(source),
            processor,
            config={"batch_size": 10_000, "max_concurrent_batches": 1, "retry_attempts": 0},
            output_path=str(tmp_path / "out"),
            records_path=str(tmp_path / "_records"),
            vat_rate=0.2,
        )
    (rec,) = FailureRecords(tmp_path / "_records").iter_records()
    assert f"unexpected keyword argument '{name}'" in rec["error"]
    assert main(["failures", "--base", str(tmp_path), "--json"]) == 0
    (recent,) = json.loads(capsys.readouterr().out)["recent"]
    assert f"'{name}'" in recent["error"]


@pytest.mark.parametrize(
    "raw, known, expected",
    [
        (
            "could not convert string to float: 'Alice Smith'",
            (),
            "could not convert string to float: <text:11>",
        ),
        (
            'invalid literal for int() with base 10: "12ab"',
            (),
            "invalid literal for int() with base 10: <text:4>",
        ),
        ("KeyError: b'\\x00\\xff'", (), "KeyError: <bytes:8>"),
        ("value 1234567 out of range 3.14159", (), "value <number:7> out of range <number:7>"),
        ("row {'name': 'Bob', 'ssn': '123-45-6789'}", (), "row {<text:4>: <text:3>, <text:3>: <text:11>}"),
        ("KeyError: 'amount'", ("amount",), "KeyError: 'amount'"),
        ("KeyError: 'amount'", (), "KeyError: <text:6>"),
        (
            "f() got an unexpected keyword argument 'vat_rate'",
            (),
            "f() got an unexpected keyword argument 'vat_rate'",
        ),
        ("'DataFrame' object has no attribute 'amout'", (), "<text:9> object has no attribute 'amout'"),
        ("name 'pd' is not defined", (), "name 'pd' is not defined"),
        ("invalid value 'hunter2' for column 'pw'", ("pw",), "invalid value <text:7> for column 'pw'"),
        (
            "/data/2026/part-00001.csv rows 100000-200000 failed",
            ("/data/2026/part-00001.csv",),
            "/data/2026/part-00001.csv rows 100000-200000 failed",
        ),
        (
            "data row 30001, bytes 739657-930131, column #2, f0:0-100000",
            (),
            "data row 30001, bytes 739657-930131, column #2, f0:0-100000",
        ),
        ("Expected 3 columns, got 4: 4111111111111111,pw,99,x", (), "Expected 3 columns, got 4: <text:24>"),
        ("skipped 12.5% of the rows", (), "skipped 12.5% of the rows"),
        ("chunk 53/84 failed after 3 attempts", (), "chunk 53/84 failed after 3 attempts"),
        ("multi\nline\t message", (), "multi line message"),
        (None, (), ""),
    ],
)
def test_scrub_message_keeps_identifiers_and_positions_and_replaces_values(raw, known, expected):
    assert scrub_message(raw, known) == expected
    assert scrub_message(expected, known) == expected  # scrubbing twice changes nothing


def test_scrub_traceback_keeps_code_lines_and_scrubs_messages():
    text = (
        "Traceback (most recent call last):\n"
        '  File "/dags/etl.py", line 12, in enrich\n'
        "    return frame['amount'] * rate\n"
        "pyarrow.lib.ArrowInvalid: CSV parse error: Expected 2 columns, got 3: 4111111111111111,x,y\n"
    )
    out = scrub_traceback(text)
    assert "4111111111111111" not in out
    assert "  File \"/dags/etl.py\", line 12, in enrich\n    return frame['amount'] * rate\n" in out


def test_scrubber_exception_rewrites_the_chain_in_place_and_keeps_attributes():
    inner = ValueError("could not convert string to float: 'Hunter2'")
    outer = RuntimeError(f"chunk failed: {inner}")
    outer.__cause__ = inner
    outer.failure_class = "processing"
    disk = OSError(28, "No space left on device")
    scrubber = Scrubber.for_job()
    assert scrubber.exception(outer) is outer
    assert_clean("".join(traceback.format_exception(outer)))
    assert outer.failure_class == "processing"
    assert scrubber.exception(disk).errno == 28  # OSError's fields are kept (classification reads errno)


def test_identifier_contexts_are_whole_words():
    assert scrub_message("invalid username 'alice'") == "invalid username <text:5>"
    assert scrub_message("bad filename 'secret_plan'") == "bad filename <text:11>"
