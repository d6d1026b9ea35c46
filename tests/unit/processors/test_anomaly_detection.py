"""AnomalyDetectionProcessor on real Parquet files: chunked scores equal scikit-learn on the whole table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.covariance import EllipticEnvelope
from sklearn.datasets import load_wine
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from threadpoolctl import threadpool_limits

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import ChunkFailedError, ConfigError
from airflow_batch_provider.processors import ChunkContext
from airflow_batch_provider.processors import anomaly_detection as ad  # registers "anomaly_detection"
from airflow_batch_provider.processors.anomaly_detection import AnomalyDetectionProcessor

CHUNKINGS = [(37, 1), (50, 2), (1000, 2)]


def write_split(df: pd.DataFrame, folder, cuts: list[int], row_group_size: int = 30):
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, len(df)]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        pq.write_table(
            pa.Table.from_pandas(df.iloc[a:b], preserve_index=False),
            folder / f"part-{i}.parquet",
            row_group_size=row_group_size,
        )
    return folder


@pytest.fixture(autouse=True, scope="module")
def single_threaded_openmp():
    """The oracles run scikit-learn in this process, which later forks chunk workers: keep OpenMP single-threaded
    here too (GNU OpenMP deadlocks in a child forked after a multi-threaded region)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def wine():
    """A real-world table shipped inside scikit-learn (178 wines, 13 measurements + the class)."""
    return load_wine(as_frame=True).frame


@pytest.fixture
def wine_source(wine, tmp_path):
    return write_split(wine, tmp_path / "wine", [100, 150])


def run(source, out, batch_size, workers, **kwargs):
    cfg = BatchConfig(batch_size=batch_size, max_concurrent_batches=workers)
    result = run_batch_job(source, "anomaly_detection", config=cfg, output_path=out, **kwargs)
    return result, read_output(result.output_uri)


@pytest.mark.parametrize(
    "algorithm,estimator",
    [
        ("isolation_forest", lambda: IsolationForest(random_state=0, contamination=0.1)),
        ("local_outlier_factor", lambda: LocalOutlierFactor(novelty=True, contamination=0.1)),
        ("sklearn.covariance:EllipticEnvelope", lambda: EllipticEnvelope(random_state=0, contamination=0.1)),
    ],
)
@pytest.mark.parametrize("batch_size,workers", CHUNKINGS)
def test_real_table_in_chunks_equals_sklearn_on_the_whole_table(
    wine, wine_source, tmp_path, algorithm, estimator, batch_size, workers
):
    result, out = run(
        wine_source, tmp_path / "out", batch_size, workers, algorithm=algorithm, contamination=0.1
    )
    x = wine.to_numpy(dtype=np.float64)
    model = estimator().fit(x)
    np.testing.assert_array_equal(out["anomaly_score"].to_numpy(), -model.score_samples(x))
    np.testing.assert_array_equal(out["is_anomaly"].to_numpy(), model.predict(x) == -1)
    pd.testing.assert_frame_equal(out.drop(columns=["anomaly_score", "is_anomaly"]), wine)
    report = result.report
    assert report["rows"] == report["fit_rows"] == 178 and report["features"] == list(wine.columns)
    assert report["anomalies"] == int((model.predict(x) == -1).sum())
    assert report["threshold"] == -model.offset_ and report["threshold_source"] == "contamination"
    assert json.dumps(report) and report["format_version"] == 1


def noisy_frame(n: int, seed: int, features: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    x[rng.random((n, features)) < 0.04] = np.nan
    x[rng.random((n, features)) < 0.005] = np.inf
    cols = {f"f {j}$": x[:, j] for j in range(features)}
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64") + seed * 10_000,
            **cols,
            "label": rng.choice(["a", "b"], n),
            "flag": rng.random(n) < 0.5,
            "constant": np.full(n, 2.0),
            "empty": np.full(n, np.nan),
        }
    )


def imputed(df: pd.DataFrame, features: list[str], fit_rows: pd.DataFrame | None = None) -> np.ndarray:
    x = df[features].to_numpy(dtype=np.float64, copy=True)
    x[~np.isfinite(x)] = np.nan
    base = x if fit_rows is None else imputed_raw(fit_rows, features)
    with np.errstate(all="ignore"):
        med = np.array([np.median(c[~np.isnan(c)]) if (~np.isnan(c)).any() else 0.0 for c in base.T])
    return np.where(np.isnan(x), med, x)


def imputed_raw(df, features):
    x = df[features].to_numpy(dtype=np.float64, copy=True)
    x[~np.isfinite(x)] = np.nan
    return x


@pytest.fixture
def noisy(tmp_path):
    df = pd.concat([noisy_frame(700, 1), noisy_frame(611, 2)], ignore_index=True)
    return df, write_split(df, tmp_path / "noisy", [700], row_group_size=200)


def test_nan_and_inf_are_imputed_with_the_fitted_median(noisy, tmp_path):
    df, src = noisy
    features = ["id", "f 0$", "f 1$", "f 2$", "f 3$", "constant", "empty"]  # default: numeric, not bool
    result, out = run(src, tmp_path / "out", 123, 2)
    assert result.report["features"] == features
    x = imputed(df, features)
    model = IsolationForest(random_state=0).fit(x)
    np.testing.assert_array_equal(out["anomaly_score"].to_numpy(), -model.score_samples(x))
    np.testing.assert_array_equal(out["is_anomaly"].to_numpy(), model.predict(x) == -1)
    assert result.report["threshold"] == 0.5 and result.report["threshold_source"] == "default"
    raw = imputed_raw(df, features)
    assert result.report["imputed_values"] == {
        f: int(np.isnan(raw[:, j]).sum()) for j, f in enumerate(features)
    }
    assert result.report["medians"]["empty"] is None and result.report["medians"]["constant"] == 2.0


def test_a_smaller_sample_is_chosen_independently_of_chunking(noisy, tmp_path):
    df, src = noisy
    features = ["f 0$", "f 1$", "f 2$", "f 3$"]
    outs = [
        run(src, tmp_path / f"out{b}", b, w, features=features, sample_size=500, contamination=0.05)[1]
        for b, w in CHUNKINGS
    ]
    for other in outs[1:]:
        pd.testing.assert_frame_equal(other, outs[0])
    # the documented sample: positions chosen with seed 0 from the row count, in source order
    positions = np.sort(np.random.default_rng(0).choice(len(df), size=500, replace=False))
    fit_rows = df.iloc[positions]
    model = IsolationForest(random_state=0, contamination=0.05).fit(imputed(fit_rows, features))
    x = imputed(df, features, fit_rows=fit_rows)
    np.testing.assert_array_equal(outs[0]["anomaly_score"].to_numpy(), -model.score_samples(x))
    np.testing.assert_array_equal(outs[0]["is_anomaly"].to_numpy(), model.predict(x) == -1)


def test_local_outlier_factor_in_high_dimension_is_chunk_invariant(tmp_path):
    """20 features: scikit-learn's brute-force neighbours (BLAS); scores must not depend on chunk boundaries."""
    df = noisy_frame(900, 5, features=20).drop(columns=["empty", "constant"])
    src = write_split(df, tmp_path / "src", [450], row_group_size=100)
    outs = [run(src, tmp_path / f"out{b}", b, w, algorithm="local_outlier_factor")[1] for b, w in CHUNKINGS]
    for other in outs[1:]:
        pd.testing.assert_frame_equal(other, outs[0])
    features = [c for c in df.columns if c.startswith("f ")] + []
    x = imputed(df, ["id", *features])
    model = LocalOutlierFactor(novelty=True).fit(x)
    np.testing.assert_allclose(outs[0]["anomaly_score"].to_numpy(), -model.score_samples(x), rtol=1e-12)


def test_robust_zscore(noisy, tmp_path):
    df, src = noisy
    features = ["f 0$", "f 1$", "constant", "empty"]
    result, out = run(src, tmp_path / "out", 97, 2, algorithm="robust_zscore", features=features)
    x = imputed(df, features)
    med = np.median(x, axis=0)
    mad = np.median(np.abs(x - med), axis=0)
    with np.errstate(all="ignore"):
        z = np.abs(0.6745 * (x[:, :2] - med[:2]) / mad[:2])
    want = z.max(axis=1)  # constant/empty features: every (imputed) value equals the median -> z = 0
    np.testing.assert_allclose(out["anomaly_score"].to_numpy(), want, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(out["is_anomaly"].to_numpy(), out["anomaly_score"].to_numpy() > 3.5)
    assert result.report["threshold"] == 3.5
    assert result.report["model_params"]["center"]["constant"] == 2.0


def test_robust_zscore_scores_values_off_a_constant_feature_as_infinite():
    p = AnomalyDetectionProcessor(algorithm="robust_zscore", features=["c"], contamination=0.1)
    p.fit(pd.DataFrame({"c": [1.0] * 10}))
    scored = p.process(
        pd.DataFrame({"c": [1.0, 2.0, np.nan]}), ChunkContext("j", 0, 0, "f", 0, 3, 1, "")
    ).rows
    assert scored["anomaly_score"].tolist() == [0.0, np.inf, 0.0]


@pytest.mark.parametrize("algorithm", ["isolation_forest", "local_outlier_factor", "robust_zscore"])
def test_state_round_trips_through_json_and_refits_bit_identically(noisy, algorithm):
    df, _ = noisy
    fitted = AnomalyDetectionProcessor(algorithm=algorithm, sample_size=400, contamination=0.02)
    fitted.fit(df.iloc[:400])
    restored = AnomalyDetectionProcessor(algorithm=algorithm, sample_size=400, contamination=0.02)
    restored.set_state(json.loads(json.dumps(fitted.get_state())))
    ctx = ChunkContext("j", 0, 0, "f", 0, len(df), 1, "")
    pd.testing.assert_frame_equal(fitted.process(df, ctx).rows, restored.process(df, ctx).rows)
    assert restored.finalize(restored.merge([])) == fitted.finalize(fitted.merge([]))


def test_resume_after_a_failed_chunk_gives_the_clean_result(noisy, tmp_path):
    _, src = noisy
    flag = tmp_path / "fail-once"
    flag.write_text("x")

    class FailsOnce(AnomalyDetectionProcessor):
        def process(self, chunk, ctx):
            if ctx.file_index == 1 and ctx.start_row >= 200 and flag.exists():
                flag.unlink()
                raise RuntimeError("crash midway")
            return super().process(chunk, ctx)

    cfg = BatchConfig(batch_size=100, max_concurrent_batches=2, checkpoint_interval=1, retry_attempts=0)
    with pytest.raises(ChunkFailedError):
        run_batch_job(src, FailsOnce(sample_size=300), config=cfg, output_path=tmp_path / "out")
    resumed = run_batch_job(
        src, AnomalyDetectionProcessor(sample_size=300), config=cfg, output_path=tmp_path / "out"
    )
    assert (
        resumed.chunks_resumed > 0
    )  # and the model was rebuilt from fit_state.json, not refitted on a sample
    clean = run_batch_job(
        src, "anomaly_detection", config={"batch_size": 2000}, output_path=tmp_path / "clean", sample_size=300
    )
    assert resumed.report == clean.report
    pd.testing.assert_frame_equal(read_output(resumed.output_uri), read_output(clean.output_uri))


def test_empty_input(tmp_path):
    src = write_split(noisy_frame(10, 1).iloc[:0], tmp_path / "src", [])
    result = run_batch_job(src, "anomaly_detection", output_path=tmp_path / "out")
    assert result.report["rows"] == 0 and result.report["anomalies"] == 0 and result.rows_out == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"contamination": 0.1, "threshold": 0.6}, "not both"),
        ({"contamination": 0.9}, "contamination"),
        ({"threshold": float("nan")}, "threshold"),
        ({"algorithm": "magic"}, "unknown 'magic'"),
        ({"algorithm": "nowhere.module:Detector"}, "cannot import"),
        ({"algorithm": "json:dumps"}, "not an estimator class"),
        ({"sample_size": 1}, "at least 2"),
        ({"sample_size": "many"}, "sample_size"),
        ({"features": "f0"}, "list of column names"),
        ({"algorithm_params": [1]}, "algorithm_params"),
        (
            {"features": ["a", "b"], "sample_size": 10**9, "memory_limit_mb": 2048},
            "lower sample_size to at most",
        ),
    ],
)
def test_bad_parameters_name_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AnomalyDetectionProcessor(**kwargs).fit_sample_size  # noqa: B018 - the engine reads it first


def test_bad_features_and_memory_are_refused_at_fit(noisy, tmp_path):
    df, src = noisy
    with pytest.raises(ConfigError, match="unknown column"):
        AnomalyDetectionProcessor(features=["nope"]).fit(df)
    with pytest.raises(ConfigError, match="not numeric"):
        AnomalyDetectionProcessor(features=["label"]).fit(df)
    with pytest.raises(ConfigError, match="memory_limit_mb=1"):
        run_batch_job(
            src, "anomaly_detection", output_path=tmp_path / "out", memory_limit_mb=1, sample_size=10**6
        )
    big = pd.DataFrame(np.zeros((6000, 7)), columns=list("abcdefg"))
    with pytest.raises(
        ConfigError, match="6,000 sample rows x 7 feature"
    ):  # checked with the real sample too
        AnomalyDetectionProcessor(memory_limit_mb=1, sample_size=6000).fit(big)
    with pytest.raises(ConfigError, match="rejects"):
        AnomalyDetectionProcessor(algorithm_params={"n_trees": 3}).fit(df)
    with pytest.raises(ConfigError, match="no offset_"):
        AnomalyDetectionProcessor(algorithm="tests.unit.processors.test_anomaly_detection:NoOffset").fit(df)


class NoOffset:
    """A detector without offset_: needs contamination or threshold."""

    def fit(self, x):
        self.mean_ = x.mean(axis=0)
        return self

    def decision_function(self, x):
        return -np.abs(x - self.mean_).sum(axis=1)


def test_custom_detector_without_offset_uses_contamination(noisy):
    df, _ = noisy
    p = AnomalyDetectionProcessor(
        algorithm="tests.unit.processors.test_anomaly_detection:NoOffset",
        features=["f 0$"],
        contamination=0.1,
    )
    p.fit(df)
    scores = np.abs(imputed(df, ["f 0$"])[:, 0] - p.model_.mean_[0])
    assert p.threshold_ == -np.percentile(-scores, 10.0)
    assert ad.AnomalyDetectionProcessor(threshold=1.0).identity()["params"].get("memory_limit_mb") is None
