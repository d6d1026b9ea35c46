"""Storage retries (backoff + jitter, classification) and exclusive create on local disk."""

from __future__ import annotations

import errno
import logging

import pytest

from airflow_batch_provider import storage
from airflow_batch_provider.exceptions import StorageNetworkError
from airflow_batch_provider.storage import Location, RetryPolicy, is_transient, with_retries

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)


class FakeClientError(Exception):
    def __init__(self, code, status):
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(
    ("err", "transient"),
    [
        (ConnectionResetError(), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (OSError(errno.ECONNRESET, "reset"), True),
        (FakeClientError("SlowDown", 503), True),
        (FakeClientError("InternalError", 500), True),
        (FakeClientError("AccessDenied", 403), False),
        (FakeClientError("InvalidRequest", 400), False),
        (FileNotFoundError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_classification(err, transient):
    assert is_transient(err) is transient


def test_wrapped_client_error_is_found_through_the_cause():
    try:
        try:
            raise FakeClientError("SlowDown", 503)
        except FakeClientError as inner:
            raise OSError(errno.EIO, "translated") from inner
    except OSError as outer:
        assert is_transient(outer)


def test_retries_then_succeeds_and_logs(caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset by peer")
        return "ok"

    with caplog.at_level(logging.WARNING, logger=storage.__name__):
        assert with_retries("read", "b/k", flaky, FAST) == "ok"
    assert len(calls) == 3 and sum("retry" in r.message for r in caplog.records) == 2


def test_exhausted_retries_raise_a_network_classified_error():
    def down():
        raise FakeClientError("ServiceUnavailable", 503)

    with pytest.raises(StorageNetworkError) as info:
        with_retries("write", "b/k", down, FAST)
    assert info.value.failure_class == "network" and info.value.attempts == 4
    assert isinstance(info.value, ConnectionError) and isinstance(info.value.__cause__, FakeClientError)


def test_client_errors_are_not_retried():
    calls = []

    def denied():
        calls.append(1)
        raise FakeClientError("AccessDenied", 403)

    with pytest.raises(FakeClientError):
        with_retries("read", "b/k", denied, FAST)
    assert len(calls) == 1


def test_backoff_is_full_jitter_and_capped():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=4.0)
    delays = [policy.delay(n) for n in range(1, 10) for _ in range(50)]
    assert min(delays) >= 0 and max(delays) <= 4.0 and len(set(delays)) > 100


def test_create_exclusive_local(tmp_path):
    loc = Location.of(str(tmp_path / "fence" / "epoch-1"))
    assert loc.create_exclusive(b"a") is True
    assert loc.create_exclusive(b"b") is False
    assert loc.read_bytes() == b"a"
    assert sorted(p.name for p in (tmp_path / "fence").iterdir()) == ["epoch-1"]  # no temp file left


def test_remote_filesystems_are_wrapped_local_ones_are_not(tmp_path):
    assert not isinstance(Location.of(str(tmp_path)).fs, storage.ResilientFileSystem)
    mem = Location.of("memory://abp-storage-test/x")
    assert isinstance(mem.fs, storage.ResilientFileSystem)
    mem.child("a.json").write_json({"k": 1})
    assert mem.child("a.json").read_json() == {"k": 1} and mem.listdir() == ["a.json"]
    assert mem.child("b").create_exclusive(b"1") and not mem.child("b").create_exclusive(b"2")


def test_local_parquet_is_read_through_arrows_own_file_and_a_custom_mount_through_its_open(tmp_path):
    """Reading rows of a local Parquet file bypasses fsspec's Python file object (Arrow's ``OSFile``: faster
    decoding); a subclass of the local filesystem (a mount with its own ``open``) keeps its own."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from fsspec.implementations.local import LocalFileSystem

    from airflow_batch_provider.engine import sources
    from airflow_batch_provider.storage import is_local_filesystem

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": np.arange(1_000)}), path, row_group_size=100)

    class Mount(LocalFileSystem):
        protocol = ("testmount", "local")
        opened: list[str] = []

        def _open(self, p, *args, **kwargs):
            Mount.opened.append(p)
            return super()._open(p, *args, **kwargs)

    plain, mount = LocalFileSystem(), Mount()
    assert is_local_filesystem(plain) and not is_local_filesystem(mount)
    with sources._open_local_natively(plain, str(path)) as fh:
        assert isinstance(fh, pa.OSFile)
    f = sources.SourceFile(str(path), "parquet", path.stat().st_size, "v1", 1_000, (100,) * 10)
    for fs in (plain, mount):
        sources.clear_row_group_cache()
        rows = sources._read_parquet_rows(fs, f, 150, 420)
        assert rows.column("x").to_pylist() == list(range(150, 420))
    assert Mount.opened, "the mount's own open was not used"
