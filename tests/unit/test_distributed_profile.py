"""Reference profiles built with Dask on a local cluster equal ``build_profile``'s on the
same data: edges (whole-data quantiles), counts, categories and the sample exactly; means,
standard deviations and bin means within a relative 1e-12 (sums in another order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.profile import build_profile
from monitor.offline.distributed_profile import (
    build_profile_dask,
    quantile_ranks,
    sortable,
    unsortable,
)

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


def test_keys_keep_the_order_of_the_floats_and_invert() -> None:
    x = np.array([-np.inf, -1e300, -2.5, -1e-300, 0.0, 1e-300, 3.0, 1e300, np.inf])
    k = sortable(x)
    assert (np.diff(k.astype(object)) > 0).all()
    assert np.array_equal(unsortable(k), x)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1001, 65_537])
@pytest.mark.parametrize("bins", [1, 4, 10, 100])
def test_ranks_are_numpys_inverted_cdf_order_statistics(n: int, bins: int) -> None:
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    want = np.quantile(np.arange(n, dtype=float), qs, method="inverted_cdf")
    assert np.array_equal(quantile_ranks(n, bins), want)


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "income": rng.lognormal(10, 1, n),
            "age": rng.integers(18, 90, n).astype(float),  # heavy ties
            "score": rng.normal(0, 1, n),
            "country": rng.choice(["DE", "FR", "IT", "ES", "NL"], n, p=[0.4, 0.3, 0.2, 0.07, 0.03]),
            "prediction": rng.uniform(size=n),
        }
    )
    df.loc[::97, "income"] = np.nan
    df.loc[::101, "score"] = np.inf
    df.loc[::89, "country"] = None
    return df


def test_a_local_cluster_builds_the_profile_build_profile_does(tmp_path: Path) -> None:
    parts = [frame(n, seed) for seed, n in enumerate([30_000, 5_000, 17_001, 1])]
    for i, part in enumerate(parts):
        part.to_parquet(tmp_path / f"part-{i}.parquet")
    whole = pd.concat(parts, ignore_index=True)
    reference = build_profile(whole, prediction=["prediction"])

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        data = dd.read_parquet(str(tmp_path / "part-*.parquet"))
        assert data.npartitions == 4
        built = build_profile_dask(data, reference.schema)

    assert built.rows == reference.rows == len(whole)
    for name, want in reference.numeric.items():
        got = built.numeric[name]
        assert np.array_equal(got.edges, want.edges), name
        assert np.array_equal(got.counts, want.counts), name
        assert (got.count, got.missing, got.non_finite) == (
            want.count,
            want.missing,
            want.non_finite,
        )
        assert (got.min, got.max) == (want.min, want.max)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)
        np.testing.assert_allclose(got.std, want.std, rtol=1e-12)
        np.testing.assert_allclose(got.bin_means, want.bin_means, rtol=1e-12)
    for name, categories in reference.categorical.items():
        assert built.categorical[name].to_dict() == categories.to_dict()
    for name, rows in reference.sample.items():
        sampled = built.sample[name]
        if rows.dtype == object:
            assert list(sampled) == list(rows)
        else:
            assert np.array_equal(sampled, rows, equal_nan=True)


def test_reference_build_dask_local_writes_the_same_edges_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from detectors.profile import load_profile
    from monitor.cli import main

    parts = [frame(n, seed) for seed, n in enumerate([4_000, 3_000])]
    for i, part in enumerate(parts):
        part.to_parquet(tmp_path / f"part-{i}.parquet")
    whole = pd.concat(parts, ignore_index=True)
    whole.to_parquet(tmp_path / "whole.parquet")
    common = ["reference", "build", "--prediction", "prediction", "--bins", "20"]
    assert (
        main([*common, "--data", str(tmp_path / "whole.parquet"), "-o", str(tmp_path / "a.json")])
        == 0
    )
    glob = str(tmp_path / "part-*.parquet")
    assert main([*common, "--data", glob, "--dask", "local", "-o", str(tmp_path / "b.json")]) == 0
    a, b = load_profile(tmp_path / "a.json"), load_profile(tmp_path / "b.json")
    assert a.schema == b.schema and a.rows == b.rows
    for name in a.numeric:
        assert np.array_equal(a.numeric[name].edges, b.numeric[name].edges)
        assert np.array_equal(a.numeric[name].counts, b.numeric[name].counts)
    assert {n: c.to_dict() for n, c in a.categorical.items()} == {
        n: c.to_dict() for n, c in b.categorical.items()
    }
    # the sequential calibration and the bridge law are stored as by a build in one
    # process (the same rates of unseen categories, from the merged counts), so the agent
    # simulates nothing at start-up; floats within the profiles' own 1e-12
    assert a.sequential is not None and b.sequential is not None
    assert a.bridge_law is not None and b.bridge_law is not None
    _assert_close(a.sequential.to_dict(), b.sequential.to_dict())
    _assert_close(a.bridge_law.to_dict(), b.bridge_law.to_dict())
    # what needs the whole frame in one process is refused with the reason, exit 2
    code = main(
        [
            *common,
            "--data",
            glob,
            "--dask",
            "local",
            "--calibrate-window",
            "500",
            "-o",
            str(tmp_path / "c.json"),
        ]
    )
    assert code == 2 and "--calibrate-window" in capsys.readouterr().err


def _assert_close(a: object, b: object, path: str = "") -> None:
    """Equal structures; numbers within a relative 1e-9."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)):
        assert len(a) == len(b), path  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, (int, float, np.number)) and not isinstance(a, bool):
        np.testing.assert_allclose(float(b), float(a), rtol=1e-9, atol=1e-12, err_msg=path)  # type: ignore[arg-type]
    else:
        assert a == b, path
