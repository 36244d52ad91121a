"""The shared experiment helpers: Bayesian Table-1 rows and their Monte Carlo scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.splits import imputation_split
from gapray.imputation import BRITS, DEARI
from gapray.imputation.experiment import (
    BAYESIAN_MODEL_NAMES,
    MODEL_NAMES,
    build_model,
    fit_and_score,
    score_uncertainty,
)

TINY = {"hidden_size": 8, "batch_size": 16, "epochs": 2, "seed": 0, "attention_feedforward": 16, "device": "cpu"}


def _split():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    t = np.arange(16)[None, :, None]
    x = np.sin(0.4 * t + rng.uniform(0, 6, (60, 1, 3))) + 0.05 * rng.normal(size=(60, 16, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    return imputation_split(TimeSeriesDataset(X=x.astype(np.float32), name="sines"), protocol="deari", rate=0.1,
                            seed=0, fold=0)


def test_bayesian_rows_are_known_models_with_the_paper_schedule() -> None:
    assert set(BAYESIAN_MODEL_NAMES) <= set(MODEL_NAMES)
    brits, deari, dml = (build_model(name, **TINY) for name in BAYESIAN_MODEL_NAMES)
    assert isinstance(brits, BRITS) and brits.config.cell == "lstm"
    assert isinstance(deari, DEARI) and deari.config.n_layers == 3 and not deari.config.dml
    assert isinstance(dml, DEARI) and dml.config.dml and dml.config.dml_pooling == "cls"
    for model in (brits, deari, dml):
        assert model.config.bayesian and model.config.unfreeze_every == 100 and model.config.n_samples == 10
    assert build_model("bayes-deari", unfreeze_every=5, kl_weight=0.5, **TINY).config.unfreeze_every == 5
    assert not build_model("deari", **TINY).config.bayesian


def test_the_fast_preset_is_deari_3_with_bf16_encoders_and_a_narrow_feed_forward() -> None:
    paper, fast = build_model("deari"), build_model("deari-fast")
    assert "deari-fast" in MODEL_NAMES
    assert fast.config == paper.config.replace(fast_attention=True, attention_feedforward=256)
    assert (paper.config.attention_feedforward, paper.config.fast_attention) == (2048, False)  # the paper's model
    assert build_model("deari-fast", **TINY).config.attention_feedforward == 16  # overrides still win


@pytest.mark.parametrize("point_estimate", ["posterior_mean", "mc_mean"])
def test_bayesian_row_is_scored_on_its_point_estimate_with_raw_and_calibrated_intervals(point_estimate: str) -> None:
    split = _split()
    model = build_model("bayes-brits", unfreeze_every=1, n_samples=4, point_estimate=point_estimate, **TINY)
    row = fit_and_score(model, split, n_samples=6, level=0.8)
    assert row["epochs"] == 2 and row["n_samples"] == 6 and row["level"] == 0.8
    assert row["point_estimate"] == point_estimate
    for key in ("picp", "width", "crps", "calibrated_picp", "calibrated_width", "calibrated_crps",
                "predict_seconds_1pass", "predict_seconds_mc", "mc_cost_ratio", "frozen_mae", "mc_mean_mae"):
        assert np.isfinite(row[key]) and row[key] >= 0, key
    assert 0 <= row["picp"] <= 1 and 0 <= row["calibrated_picp"] <= 1
    # the Monte Carlo mean's MAE (other draws: close, not equal) differs from the frozen network's
    torch.manual_seed(1)
    mc = model.predict(split.test, n_samples=6, return_samples=True)["samples"].mean(0)
    mask = split.test.indicating_mask > 0
    expected = np.abs(mc - np.nan_to_num(split.test.X_ori))[mask].mean()
    assert row["mc_mean_mae"] == pytest.approx(expected, rel=1e-2) and row["mc_mean_mae"] != row["frozen_mae"]
    # the row's MAE is the point estimate's: the posterior-mean pass, or the samples' mean
    point_mae = row["frozen_mae"] if point_estimate == "posterior_mean" else row["mc_mean_mae"]
    assert row["mae"] == pytest.approx(point_mae, rel=1e-6)  # float32 mean vs the samples' mean
    # the calibrated intervals are the raw ones scaled on the validation set's removed entries. The raw
    # std includes the aleatoric scale learned on the training records' removed entries, so it is on the
    # scale of the errors already: the conformal multiplier is near the Gaussian z (1.28 at 80 %), not the
    # hundreds a weight spread alone needs (with ~20 held-out entries per split, nominal coverage itself is
    # too noisy to assert here; tests/imputation/test_uncertainty.py checks it on synthetic data)
    assert 0.25 < row["conformal_multiplier"] / 1.2816 < 4
    assert row["calibrated_width"] / row["width"] == pytest.approx(row["conformal_multiplier"] / 1.2816, rel=1e-3)
    assert row["picp"] > 0.2 and -1 <= row["spearman"] <= 1


def test_deterministic_rows_have_no_interval_scores_and_score_uncertainty_refuses_them() -> None:
    split = _split()
    model = build_model("brits-gru", **TINY)
    row = fit_and_score(model, split)
    assert "picp" not in row and row["predict_seconds"] > 0
    with pytest.raises(ValueError, match="not Bayesian"):
        score_uncertainty(model, split)
