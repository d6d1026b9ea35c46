from __future__ import annotations

import numpy as np
import pandas as pd

from airflow_batch_provider.processors.hashing import (
    HashSet,
    first_positions,
    hash_rows,
    hash_values,
    merge_first_positions,
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


def test_first_positions_find_earlier_duplicates_across_chunks():
    keys = pd.Series([5, 3, 5, 9, 3, 3, 1])
    h = hash_values(keys)
    pos = np.arange(len(keys))
    parts = [first_positions(h[i : i + 3], pos[i : i + 3]) for i in (3, 0, 6)]  # any order
    uniq, first = merge_first_positions(parts)
    idx = np.searchsorted(uniq, h)
    is_dup = first[idx] < pos
    assert is_dup.tolist() == keys.duplicated().tolist()
    assert HashSet(uniq).contains(hash_values(pd.Series([9, 4]))).tolist() == [True, False]
