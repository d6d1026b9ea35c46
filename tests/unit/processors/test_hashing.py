from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from airflow_batch_provider.processors import hashing
from airflow_batch_provider.processors.hashing import (
    HashSet,
    hash_rows,
    hash_values,
)


def test_distinct_counts_merge_exactly_across_chunks():
    s = pd.Series(["a", "b", None, "a", "c", "b", "d e", None] * 50)
    whole = len(HashSet(hash_values(s)))
    pieces = [
        HashSet.from_state(HashSet(hash_values(s.iloc[i : i + 7])).to_state()) for i in range(0, len(s), 7)
    ]
    assert whole == len(HashSet.union(pieces)) == s.nunique() == 4


def test_hashes_are_stable_and_typed():
    assert hash_values(pd.Series([1, 2, 3])).tolist() == hash_values(pd.Series([1, 2, 3])).tolist()
    assert (
        hash_rows(pd.DataFrame({"a": [1, 1], "b": ["x", "x"]})).tolist()[0]
        == hash_rows(pd.DataFrame({"a": [1], "b": ["x"]})).tolist()[0]
    )


def test_hash_set_contains_exactly_its_values():
    h = hash_values(pd.Series([5, 3, 5, 9, 3, 3, 1]))
    assert HashSet(np.unique(h)).contains(hash_values(pd.Series([9, 4, 1]))).tolist() == [True, False, True]
    assert HashSet().contains(h).tolist() == [False] * len(h)


# -- spilling: side files and the streaming k-way merge ---------------------------------------------------


def _runs(keys: np.ndarray, cuts: list[int], folder, spill: bool) -> list[dict]:
    pos = np.arange(len(keys), dtype=np.int64)
    edges = [0, *cuts, len(keys)]
    out = []
    for i in range(len(edges) - 1):
        h, p, rep = hashing.first_positions_run(keys[edges[i] : edges[i + 1]], pos[edges[i] : edges[i + 1]])
        out.append(hashing.run_state(h, p, rep, spill_to=str(folder / f"run{i}") if spill else None))
    return out


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_streaming_merge_equals_pandas_duplicated_for_any_split(tmp_path, monkeypatch, spill, seed):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(hashing, "SPILL_MIN_KEYS", int(rng.integers(0, 40)))
    monkeypatch.setattr(hashing, "FAN_IN", int(rng.integers(2, 5)))  # groups -> temporary runs
    n = int(rng.integers(1, 3000))
    keys = hash_values(pd.Series(rng.integers(0, max(1, n // 3), n)))
    cuts = sorted(rng.integers(0, n + 1, int(rng.integers(0, 25))).tolist())
    states = _runs(keys, cuts, tmp_path, spill)
    rng.shuffle(states)  # merge order does not matter
    states = json.loads(json.dumps(states))
    target = str(tmp_path / "merged") if spill else None
    distinct, repeated = hashing.repeated_first_positions(states, target, workdir=str(tmp_path))
    assert distinct == len(np.unique(keys)) == hashing.count_distinct_runs(states)
    rh, rp = hashing.load_run(json.loads(json.dumps(repeated)))
    idx = np.minimum(np.searchsorted(rh, keys), max(len(rh) - 1, 0))
    hit = (rh[idx] == keys) if len(rh) else np.zeros(n, dtype=bool)
    dup = np.zeros(n, dtype=bool)
    dup[hit] = rp[idx[hit]] < np.arange(n)[hit]
    assert dup.tolist() == pd.Series(keys).duplicated().tolist()
    assert len(rh) == pd.Series(keys).duplicated(keep=False).groupby(keys).any().sum()  # only repeated keys
    for budget in (1, 7, 10**6):  # tiny steps give the same blocks' union
        blocks = list(hashing.iter_merged(states, budget=budget, workdir=str(tmp_path)))
        assert np.concatenate([b[0] for b in blocks]).tolist() == np.unique(keys).tolist()
        only = list(hashing.iter_merged(states, budget=budget, workdir=str(tmp_path), hashes_only=True))
        assert all(len(b) == 1 for b in only)  # positions and flags neither read nor merged
        assert np.concatenate([b[0] for b in only]).tolist() == np.unique(keys).tolist()
    assert not list(tmp_path.glob("keys-merge-*")) and not list(tmp_path.glob("*.tmp"))


def test_hash_set_spills_to_a_side_file_and_unions_streamed(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "SPILL_MIN_KEYS", 3)
    s = pd.Series(np.arange(100) % 37)
    small = HashSet(hash_values(s.iloc[:3])).to_state(spill_to=str(tmp_path / "small"))
    assert "hashes" in small and not list(tmp_path.iterdir())  # at most SPILL_MIN_KEYS: inline
    parts = [
        HashSet(hash_values(s.iloc[i : i + 30])).to_state(spill_to=str(tmp_path / f"p{i}"))
        for i in (0, 30, 60)
    ]
    assert all("file" in p for p in parts) and (tmp_path / "p0.h.u8").stat().st_size == 8 * 30
    assert HashSet.from_state(parts[1]).values.tolist() == HashSet(hash_values(s.iloc[30:60])).values.tolist()
    everything = [*parts, small, None, HashSet().to_state()]
    assert (
        HashSet.count_distinct_runs(everything)
        == 37
        == len(HashSet.union([HashSet.from_state(p) for p in everything]))
    )
    for target in (None, str(tmp_path / "union")):
        union = HashSet.union_runs(everything, target)
        assert HashSet.state_len(union) == 37 == len(HashSet.from_state(union))
    assert HashSet.state_len({"n": 5}) == 5 and HashSet.state_len(HashSet(hash_values(s)).to_state()) == 37
    assert HashSet.state_len({"hashes": HashSet(hash_values(s)).to_state()["hashes"]}) == 37


def test_spill_folder_is_under_the_job_folder_on_any_storage():
    assert hashing.spill_folder("") is None and hashing.spill_folder(None) is None
    assert hashing.spill_folder("memory://bucket/job", "x") == "memory://bucket/job/_keys/x"
    assert hashing.spill_folder("/tmp/job", "x").endswith("/tmp/job/_keys/x")


def test_runs_on_object_storage_are_uploaded_and_merge_like_local_ones(tmp_path):
    """memory:// stands for an object store: the side files are objects in the job folder, read back through
    a local cache copy; a merge of runs there equals the same merge of local runs."""
    import fsspec

    from airflow_batch_provider.processors import side_files

    root = f"memory://abp-test-{tmp_path.name}/job"
    side_files.register(root)
    try:
        rng = np.random.default_rng(3)
        runs = [np.unique(rng.integers(0, 50_000, 20_000).astype(np.uint64)) for _ in range(3)]
        remote = [hashing.run_state(r, spill_to=f"{root}/_keys/r{i}") for i, r in enumerate(runs)]
        local = [hashing.run_state(r, spill_to=str(tmp_path / f"r{i}")) for i, r in enumerate(runs)]
        fs = fsspec.filesystem("memory")
        assert all(s["file"].startswith(root) for s in remote)
        assert fs.exists(f"abp-test-{tmp_path.name}/job/_keys/r0.h.u8")
        side_files.release(root)  # no cached copies: the next reads download
        side_files.register(root)
        expected = len(np.unique(np.concatenate(runs)))
        assert HashSet.count_distinct_runs(remote) == HashSet.count_distinct_runs(local) == expected
        union = HashSet.union_runs(remote, f"{root}/_keys/union")
        assert union["file"] == f"{root}/_keys/union" and len(HashSet.from_state(union)) == expected
    finally:
        side_files.release(root)


def test_hash_strings_equals_hash_values_for_text():
    values = np.array(["a", "", "é", "ID-0000000001", "a b", "x" * 10_000], dtype=object)
    assert hashing.hash_strings(values).tolist() == hash_values(pd.Series(values, dtype=object)).tolist()
    assert hashing.hash_strings(np.empty(0, dtype=object)).tolist() == []


def test_first_positions_run_takes_the_smallest_position_in_any_order():
    rng = np.random.default_rng(3)
    keys = hash_values(pd.Series(rng.integers(0, 50, 500)))
    for pos in (np.arange(500, dtype=np.int64), rng.permutation(500).astype(np.int64)):  # sorted / not
        h, p, rep = hashing.first_positions_run(keys, pos)
        frame = pd.DataFrame({"h": keys, "p": pos}).groupby("h")["p"].agg(["min", "size"])
        assert h.tolist() == frame.index.tolist() and p.tolist() == frame["min"].tolist()
        assert rep.tolist() == (frame["size"] > 1).tolist()
