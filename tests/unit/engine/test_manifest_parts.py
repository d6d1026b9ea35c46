"""A stored ``_manifest.json`` cannot make a job read outside its folder (issue #18, finding 3)."""

from __future__ import annotations

import json
import shutil

import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import SourceError
from tests.conftest import sample_frame


@pytest.fixture
def output(make_parquet, tmp_path):
    """A committed job folder, and a Parquet file outside it (what a tampered manifest would point at)."""
    src = make_parquet(sample_frame(300, seed=5), "a.parquet")
    run_batch_job(
        str(src), "passthrough", output_path=str(tmp_path / "job"), records_path=False, monitor=False
    )
    secret = tmp_path / "elsewhere" / "secret.parquet"
    secret.parent.mkdir()
    shutil.copy(src, secret)
    return tmp_path / "job", secret


def tamper(job, key, entry):
    manifest_path = job / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest[key] = [*manifest[key], entry]
    manifest_path.write_text(json.dumps(manifest))
    return manifest_path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "uri", "symlink"])
def test_a_manifest_part_outside_the_folder_is_refused(output, kind):
    job, secret = output
    if kind == "symlink":
        (job / "g0001" / "parts" / "zz.parquet").symlink_to(secret)
        entry = "g0001/parts/zz.parquet"
    else:
        entry = {"dotdot": "../elsewhere/secret.parquet", "absolute": str(secret), "uri": f"file://{secret}"}[
            kind
        ]
    manifest = tamper(job, "parts", entry)
    with pytest.raises(SourceError) as info:
        run_batch_job(
            str(job), "count", output_path=str(job.parent / "next"), records_path=False, monitor=False
        )
    assert str(manifest) in str(info.value) and repr(entry) in str(info.value)
    with pytest.raises(SourceError):
        read_output(str(job))


def test_a_quarantine_entry_outside_the_folder_is_refused(output):
    job, _ = output
    tamper(job, "quarantine", "../elsewhere/secret.parquet")
    with pytest.raises(SourceError, match="not inside that folder"):
        read_output(str(job), quarantine=True)


def test_parts_inside_the_folder_still_read(output):
    job, _ = output
    assert len(read_output(str(job))) == 300
