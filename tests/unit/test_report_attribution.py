"""The HTML report's attribution section (monitor/report/attribution.py)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from detectors.attribution import attribution_drift, attribution_profile
from detectors.evaluate import evaluate_window
from detectors.profile import build_profile
from detectors.results import WindowReport
from detectors.settings import DriftSettings
from detectors.sketch import WindowSketch
from monitor.report import render_report
from monitor.report.attribution import reference_quantiles

FEATURES = ("a", "b", "c")


def _phi(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return np.c_[rng.normal(0, 2, n), rng.normal(shift, 1, n), np.zeros(n)]


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame({f: rng.normal(size=3000) for f in FEATURES})
    plain = build_profile(data)
    reference = attribution_profile(
        FEATURES, _phi(rng, 5000), method="tree", library="test", expected_value=0.0
    )
    profile = replace(plain, attribution=reference)
    window = data.head(1000).assign(b=lambda d: d.b + 1.0)
    sketch = WindowSketch(profile)
    sketch.update(window)
    features, predictions, quality = evaluate_window(profile, sketch)
    attribution = attribution_drift(
        reference, _phi(rng, 1000, shift=1.0), DriftSettings(), features
    )
    report = WindowReport(
        model="m",
        model_version="v1",
        window_start=0.0,
        window_end=1000.0,
        reference_hash=profile.content_hash,
        rows=1000,
        drift=features,
        prediction_drift=predictions,
        quality=quality,
        window_kind="rows",
        attribution=attribution,
    )
    plain_report = replace(report, reference_hash=plain.content_hash, attribution=None)
    return {
        "with": render_report(report, profile, sketch=sketch, evidently=False),
        "skipped": render_report(replace(report, attribution=None), profile, evidently=False),
        "none": render_report(plain_report, plain, evidently=False),
    }


def _section(page: str) -> str:
    match = re.search(r'<section id="attribution".*?</section>', page, re.S)
    assert match is not None
    return match.group(0)


def test_section_shows_ranking_importance_distributions_and_impact(pages) -> None:
    html = _section(pages["with"])
    assert "attribution drift" in html
    assert "the ranking holds" in html
    assert html.count('class="plot importance"') == 1
    assert html.count('class="plot shap-quantiles"') == 3
    assert "Drifted features by impact" in html
    # b drifted (features and attributions): first in the impact table and the driver
    impact = re.search(r"<h3>Drifted features by impact</h3>.*?</table>", html, re.S)
    assert impact is not None and re.search(r"<td>b</td>", impact.group(0))
    assert "moved the model's output: <b>b</b>" in html
    assert re.search(r'<tr class="drifted"><td>b</td>', html)
    assert not re.search(r'<tr class="drifted"><td>a</td>', html)
    assert 'href="#attribution"' in pages["with"]


def test_skipped_window_says_so_and_no_attributions_means_no_section(pages) -> None:
    assert "this window has none" in _section(pages["skipped"])
    assert 'id="attribution"' not in pages["none"]
    assert 'href="#attribution"' not in pages["none"]  # nor a link to it


def test_reference_quantiles_read_from_the_bins_match_the_sample() -> None:
    rng = np.random.default_rng(1)
    phi = _phi(rng, 20000)
    reference = attribution_profile(
        FEATURES, phi, method="tree", library="test", expected_value=0.0
    )
    q = reference_quantiles(reference.distributions["a"])
    exact = np.quantile(phi[:, 0], np.linspace(0, 1, 11))
    # within one bin of 100 quantile bins: 1 % of the mass either side
    lo = np.quantile(phi[:, 0], np.clip(np.linspace(0, 1, 11) - 0.01, 0, 1))
    hi = np.quantile(phi[:, 0], np.clip(np.linspace(0, 1, 11) + 0.01, 0, 1))
    assert np.all((q >= lo - 1e-12) & (q <= hi + 1e-12))
    assert q[0] == pytest.approx(exact[0]) and q[-1] == pytest.approx(exact[-1])
    assert np.all(reference_quantiles(reference.distributions["c"]) == 0.0)
