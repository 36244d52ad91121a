"""Learning actually happens on real data: DEARI beats mean imputation on PhysioNet held-out entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gapray.data import imputation_split
from gapray.data.loaders import load_physionet2012
from gapray.imputation import DEARI, DEARIConfig, MeanImputer


@pytest.fixture(scope="module")
def physionet_split(data_dir: Path):  # type: ignore[no-untyped-def]
    dataset = load_physionet2012(data_dir / "physionet2012", "a", progress=False)
    subset = dataset.subset(np.random.default_rng(0).choice(len(dataset), 300, replace=False))
    return imputation_split(subset, protocol="deari", rate=0.1, seed=0, fold=0)


def test_deari_beats_mean_imputation_after_a_few_epochs(physionet_split) -> None:  # type: ignore[no-untyped-def]
    split = physionet_split
    mean = MeanImputer()
    mean.fit(split.train)
    baseline = mean.evaluate(split.test)["mae"]

    model = DEARI(DEARIConfig(n_layers=2, hidden_size=16, attention_heads=2, attention_feedforward=32,
                              batch_size=32, lr=5e-3, epochs=4, seed=0))
    history = model.fit(split.train, split.val)
    scores = model.evaluate(split.test)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert scores["mae"] < 0.85 * baseline, (scores, baseline)
    assert np.isfinite(scores["mre"]) and scores["mre"] < 1.0
