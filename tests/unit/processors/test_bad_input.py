"""Bad input through every standard processor: handled and counted, or rejected naming the file, row and fix.

The readers have their own detailed tests (tests/unit/engine/test_textformats.py); this runs the same kinds of
bad input through each processor's whole job so that none of them crashes after partial output or shifts rows.
"""

from __future__ import annotations

import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.engine.sources import OUTPUT_MANIFEST
from airflow_batch_provider.exceptions import DataCorruptionError
from tests.unit.processors.test_conformance import _strip

PARAMS = {
    "anomaly_detection": {"features": ["n", "x"], "sample_size": 1_000},
    "data_quality": {"rules": [{"type": "not_null", "column": "x"}, {"type": "unique", "column": "n"}]},
    "data_profiling": {},
    "feature_engineering": {"scale": {"x": "standard"}, "impute": {"x": "mean"}},
}
NAMES = sorted(PARAMS)
ROWS = 400


def _lines(start: int, stop: int, sep: str = ",") -> str:
    return "".join(f"{i}{sep}{(i * 7) % 13 / 4 if i % 9 else ''}{sep}w{i % 5}\n" for i in range(start, stop))


def _clean(folder, sep=","):
    folder.mkdir()
    (folder / "a.csv").write_text(f"n{sep}x{sep}t\n" + _lines(0, ROWS // 2, sep))
    (folder / "b.csv").write_text(f"n{sep}x{sep}t\n" + _lines(ROWS // 2, ROWS, sep))
    return folder


def _run(name, source, out, **kw):
    return run_batch_job(
        source, name, config={"batch_size": 97}, output_path=out, records_path=False, **PARAMS[name], **kw
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input-ref")
    src = _clean(root / "src")
    return {name: _run(name, src, root / name) for name in NAMES}


def _same(result, ref):
    assert result.rows_in == ref.rows_in == ROWS
    assert _strip(result.report) == _strip(ref.report)
    ours, theirs = read_output(result.output_uri), read_output(ref.output_uri)
    assert (ours is None) == (theirs is None)
    if ours is not None:
        assert ours.equals(theirs)


@pytest.mark.parametrize("name", NAMES)
def test_bom_and_semicolons_with_the_delimiter_option_equal_the_clean_csv(name, tmp_path, reference):
    src = _clean(tmp_path / "src", sep=";")
    for f in src.iterdir():
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    _same(_run(name, src, tmp_path / "out", csv_options={"delimiter": ";"}), reference[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_header_only_file_contributes_no_rows(name, tmp_path, reference):
    src = _clean(tmp_path / "src")
    (src / "c.csv").write_text("n,x,t\n")
    _same(_run(name, src, tmp_path / "out"), reference[name])


@pytest.mark.parametrize("name", NAMES)
def test_malformed_row_fails_before_any_output_naming_file_row_and_fix(name, tmp_path):
    src = _clean(tmp_path / "src")
    (src / "b.csv").write_text("n,x,t\n" + _lines(200, 260) + "260,1.5,w,extra\n" + _lines(261, ROWS))
    with pytest.raises(DataCorruptionError) as info:
        _run(name, src, tmp_path / "out")
    message = str(info.value)
    assert "b.csv" in message and "row" in message.lower(), message
    assert not (tmp_path / "out" / OUTPUT_MANIFEST).exists()


@pytest.mark.parametrize("name", NAMES)
def test_undecodable_bytes_fail_naming_the_file_and_the_option(name, tmp_path):
    src = _clean(tmp_path / "src")
    data = (src / "a.csv").read_bytes()
    cut = data.index(b"\n150,")
    (src / "a.csv").write_bytes(data[:cut] + b"\n150,1.0,w\xff\xfe" + data[data.index(b"\n", cut + 1) :])
    with pytest.raises(DataCorruptionError) as info:
        _run(name, src, tmp_path / "out")
    message = str(info.value)
    # a chunk names the skip option; a fit sample read before the chunks (anomaly detection) names the fix
    assert "a.csv" in message and ("max_skipped_fraction" in message or "UTF-8" in message), message
    assert not (tmp_path / "out" / OUTPUT_MANIFEST).exists()


@pytest.mark.parametrize("name", NAMES)
def test_a_three_mib_field_is_read_without_shifting_rows(name, tmp_path):
    src = _clean(tmp_path / "src")
    big = "y" * (3 * 2**20)
    (src / "b.csv").write_text("n,x,t\n" + _lines(200, 300) + f"300,2.5,{big}\n" + _lines(301, ROWS))
    result = _run(name, src, tmp_path / "out")
    assert result.rows_in == ROWS
    if name == "data_profiling":
        assert result.report["columns"]["t"]["count"] == ROWS
        assert result.report["columns"]["n"]["max"] == ROWS - 1
    out = read_output(result.output_uri)
    if out is not None and "t" in out.columns:  # row outputs keep every row in place
        assert out["t"].str.len().max() == len(big)
        assert sorted(out["n"]) == list(range(ROWS)) or name == "data_quality"


@pytest.mark.parametrize("name", NAMES)
def test_text_in_a_numeric_column_is_read_as_text_or_rejected_naming_column_and_option(name, tmp_path):
    """One word in the numeric column ``x`` (in the second file): the column is read as text everywhere; a
    processor that needs it numeric refuses with the column and the ``column_types`` option, before any output."""
    src = _clean(tmp_path / "src")
    (src / "b.csv").write_text("n,x,t\n" + _lines(200, 300) + "300,seven,w0\n" + _lines(301, ROWS))
    try:
        result = _run(name, src, tmp_path / "out")
    except Exception as err:  # noqa: BLE001 - the assertion below says what is acceptable
        message = str(err)
        assert name != "data_profiling", message
        assert "'x'" in message or '"x"' in message or " x " in message, message
        assert not (tmp_path / "out" / OUTPUT_MANIFEST).exists()
        return
    assert result.rows_in == ROWS
    if name == "data_profiling":
        x = result.report["columns"]["x"]
        assert x["type"] == "text" and x["count"] + x["nulls"] == ROWS
