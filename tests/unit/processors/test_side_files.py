"""The conformance checks over the binary side files that hold states growing with the data (key hashes of
distinct counts, duplicate rows and unique keys; feature engineering's median distributions, its defaults):
with a spill threshold low enough that every chunk of the conformance source spills, the result equals the inline run for any chunking and concurrency (round trip),
and a damaged side file is noticed instead of giving wrong counts (mutation check)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airflow_batch_provider.engine import read_output
from airflow_batch_provider.engine.runner import JobRunner
from airflow_batch_provider.processors import column_stats, hashing
from tests.unit.processors.test_conformance import CASES, _frame, _run, _strip, source  # noqa: F401

SPILLING = ("data_profiling", "data_quality", "feature_engineering_defaults")


@pytest.fixture(scope="module")
def inline(source, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("inline")
    return {name: _run(source, name, base / name, 10_000, 1) for name in SPILLING}


@pytest.fixture
def spill_everything(monkeypatch):
    """Every key set and distribution of more than 8 entries goes to side files (forked workers inherit it)."""
    monkeypatch.setattr(hashing, "SPILL_MIN_KEYS", 8)
    monkeypatch.setattr(column_stats, "SPILL_MIN_VALUES", 8)


def _side_files(out: Path) -> list[Path]:
    return sorted([*out.rglob("*.h.u8"), *out.rglob("*.bin")])


def _refs(state) -> list[str]:
    if isinstance(state, dict):
        found = [state["file"]] if isinstance(state.get("file"), str) else []
        return found + [r for v in state.values() for r in _refs(v)]
    if isinstance(state, list):
        return [r for v in state for r in _refs(v)]
    return []


@pytest.mark.parametrize("name", SPILLING)
@pytest.mark.parametrize("batch_size,workers", [(97, 2), (700, 1)])
def test_side_files_round_trip(name, batch_size, workers, source, inline, tmp_path, spill_everything):  # noqa: F811
    result = _run(source, name, tmp_path / "out", batch_size, workers)
    assert _side_files(tmp_path / "out"), "no state went to a side file"
    assert _strip(result.report) == _strip(inline[name].report)
    CASES[name][1](result.report, _frame())
    ref = read_output(inline[name].output_uri)
    if ref is not None:
        pd.testing.assert_frame_equal(read_output(result.output_uri), ref, check_exact=True)


@pytest.mark.parametrize("name", SPILLING)
def test_mutation_a_damaged_side_file_is_caught(name, source, tmp_path, monkeypatch, spill_everything):  # noqa: F811
    original = JobRunner.load_state
    damaged = []

    def truncate_second(self, record):
        state = original(self, record)
        if record["f"] == 0 and record["s"] == 97 and not damaged:
            for ref in _refs(state):
                for path in (Path(ref + ".h.u8"), Path(ref + ".c.bin")):
                    if path.exists():
                        path.write_bytes(path.read_bytes()[:-8])  # one entry less
                        damaged.append(path)
        return state

    monkeypatch.setattr(JobRunner, "load_state", truncate_second)
    try:
        result = _run(source, name, tmp_path / "out", 97, 1)
    except Exception as err:  # noqa: BLE001 - whatever the engine wraps it in, it must name the side file
        assert damaged
        chain, seen = [], err
        while seen is not None:
            chain.append(str(seen))
            seen = seen.__cause__ or seen.__context__
        assert any("side file" in text for text in chain), chain
        return
    assert damaged
    with pytest.raises(AssertionError):
        CASES[name][1](result.report, _frame())
