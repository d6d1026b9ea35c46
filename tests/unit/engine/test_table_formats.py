"""Delta Lake and Iceberg table folders are refused as sources (issue #17): their Parquet files include removed
rows and old versions; only the table's log or metadata says which files are live."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from airflow_batch_provider.cli import main as cli
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.exceptions import SourceError


def _parquet(path, n=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": range(n)}).to_parquet(path)


@pytest.fixture
def delta(tmp_path):
    """A Delta table as delta-rs writes one: a partition folder, a removed file still on disk, the log."""
    table = tmp_path / "events"
    _parquet(table / "date=2026-01-01" / "part-0000.parquet")
    _parquet(table / "date=2026-01-01" / "part-0001-removed.parquet")  # a remove action in version 1
    (table / "_delta_log").mkdir()
    (table / "_delta_log" / "00000000000000000000.json").write_text(json.dumps({"protocol": {}}) + "\n")
    return table


@pytest.fixture
def iceberg(tmp_path):
    table = tmp_path / "warehouse" / "db" / "orders"
    _parquet(table / "data" / "00000-0-a.parquet")
    (table / "metadata").mkdir(parents=True)
    (table / "metadata" / "v1.metadata.json").write_text("{}")
    (table / "metadata" / "snap-1.avro").write_bytes(b"Obj\x01")
    return table


def test_a_delta_table_folder_is_refused_naming_the_log_and_the_fix(delta, tmp_path):
    with pytest.raises(SourceError) as err:
        run_batch_job(delta, "count", output_path=tmp_path / "out")
    message = str(err.value)
    assert f"source {delta}: {delta} holds a Delta Lake table (it has _delta_log/);" in message
    assert "lakehouse reader" in message and "deltalake.DeltaTable" in message and "removed rows" in message
    assert not (tmp_path / "out" / "_manifest.json").exists()


@pytest.mark.parametrize("inside", ["date=2026-01-01", "date=2026-01-01/*.parquet", "*/*.parquet"])
def test_a_partition_folder_or_a_glob_inside_the_table_is_refused_too(delta, tmp_path, inside):
    with pytest.raises(SourceError, match=rf": {delta} holds a Delta Lake table \(it has _delta_log/\)"):
        run_batch_job(f"{delta}/{inside}", "count", output_path=tmp_path / "out")


def test_an_iceberg_table_folder_is_refused(iceberg, tmp_path):
    with pytest.raises(
        SourceError, match=r"orders holds an Iceberg table \(it has metadata/\*\.metadata\.json\);.*pyiceberg"
    ):
        run_batch_job(iceberg, "count", output_path=tmp_path / "out")
    with pytest.raises(SourceError, match=r"orders holds an Iceberg table .*\(the source lies inside it\)"):
        run_batch_job(iceberg / "data", "count", output_path=tmp_path / "out")


def test_lookalikes_are_read(tmp_path):
    """A folder named metadata without *.metadata.json, a file called _delta_log elsewhere, a single file of a
    table given explicitly: read as usual."""
    folder = tmp_path / "plain"
    _parquet(folder / "a.parquet", 7)
    (folder / "metadata").mkdir()
    (folder / "metadata" / "notes.json").write_text("{}")
    assert run_batch_job(folder, "count", output_path=tmp_path / "o1").rows_in == 7
    far = tmp_path / "a" / "b" / "c" / "d" / "e"
    _parquet(far / "x.parquet", 3)
    (tmp_path / "a" / "_delta_log").mkdir()  # 4 levels up: beyond PARENT_LEVELS, not this source's table
    assert run_batch_job(far, "count", output_path=tmp_path / "o2").rows_in == 3


def test_a_single_file_of_a_table_is_the_users_explicit_choice(delta, tmp_path):
    one = delta / "date=2026-01-01" / "part-0000.parquet"
    assert run_batch_job(one, "count", output_path=tmp_path / "o").rows_in == 10


def test_the_cli_says_so_too(delta, capsys):
    assert cli(["recommend", str(delta), "--processor", "count"]) == 2
    assert "holds a Delta Lake table" in capsys.readouterr().err
