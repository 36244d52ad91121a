"""Deep metric learning (DEARI Sec. 4.2): pairs from the two directions, mining on crafted batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses, miners

from gapray.data import TimeSeriesDataset, remove_observed_per_sample
from gapray.imputation import BRITSConfig, DEARIConfig
from gapray.imputation.brits.core import BRITSCore
from gapray.imputation.deari.core import DEARICore
from gapray.imputation.dml import MetricLearningLoss, direction_pairs, multi_similarity_loss, pool_representation
from gapray.imputation.training import prepare


def _mined(forward: torch.Tensor, backward: torch.Tensor, margin: float = 0.1) -> tuple[set, set]:
    embeddings, labels = direction_pairs(forward, backward)
    a1, p, a2, n = miners.MultiSimilarityMiner(epsilon=margin)(embeddings, labels)
    return set(zip(a1.tolist(), p.tolist())), set(zip(a2.tolist(), n.tolist()))


def test_directions_of_one_sample_share_a_label() -> None:
    embeddings, labels = direction_pairs(torch.zeros(3, 2), torch.ones(3, 2))
    assert labels.tolist() == [0, 1, 2, 0, 1, 2] and embeddings.shape == (6, 2)


def test_well_separated_pairs_are_not_mined_and_the_loss_is_zero() -> None:
    eye = torch.eye(3)  # anchor == positive, negatives orthogonal: ||A-P|| + margin < ||A-N||
    positives, negatives = _mined(eye, eye.clone())
    assert positives == set() and negatives == set()
    loss = multi_similarity_loss(eye, eye.clone(), miners.MultiSimilarityMiner(epsilon=0.1),
                                 losses.MultiSimilarityLoss())
    assert loss.item() == 0.0


def test_margin_violating_pairs_are_mined() -> None:
    # sample 0's two directions are orthogonal, while sample 1's forward sits next to sample 0's forward
    forward = torch.tensor([[1.0, 0.0, 0.0], [0.95, 0.05, 0.0], [0.0, 0.0, 1.0]])
    backward = torch.tensor([[0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    positives, negatives = _mined(forward, backward)
    assert (0, 3) in positives  # f0 with b0: less similar than a negative
    assert (0, 1) in negatives and (0, 4) in negatives  # f0 with f1 / b1: more similar than its positive
    # sample 2 is clean: as an anchor it has no violating negative, and its own pair is not mined
    assert not any(a in (2, 5) for a, _ in negatives)
    assert not any(2 in pair or 5 in pair for pair in positives)
    loss = multi_similarity_loss(forward, backward, miners.MultiSimilarityMiner(epsilon=0.1),
                                 losses.MultiSimilarityLoss())
    assert loss.item() > 0.0


def test_a_larger_margin_mines_more_pairs() -> None:
    torch.manual_seed(0)
    forward, backward = torch.randn(8, 4), torch.randn(8, 4)
    small, large = _mined(forward, backward, 0.0), _mined(forward, backward, 0.5)
    assert len(small[0]) + len(small[1]) < len(large[0]) + len(large[1])


@pytest.mark.parametrize("pooling", ["cls", "last", "mean"])
def test_pooling_and_gradient_reach_the_attention(pooling: str) -> None:
    torch.manual_seed(0)
    head = MetricLearningLoss(8, pooling=pooling, margin=0.5, attention_heads=2)
    hidden_f, hidden_b = torch.randn(6, 5, 8, requires_grad=True), torch.randn(6, 5, 8)
    loss = head(hidden_f, hidden_b)
    assert loss.item() > 0
    loss.backward()
    assert hidden_f.grad is not None and hidden_f.grad.abs().sum() > 0
    assert head.encoder.layers[0].linear1.weight.grad.abs().sum() > 0
    # a sequence [[0, 1], [2, 3], [4, 5]]: the first token, the last one, or their mean
    expected = {"cls": [[0.0, 1.0]], "last": [[4.0, 5.0]], "mean": [[2.0, 3.0]]}[pooling]
    assert torch.equal(pool_representation(torch.arange(6.0).reshape(1, 3, 2), pooling), torch.tensor(expected))


def test_dml_term_is_added_for_brits_and_deari() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 5, 3)).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = np.nan
    batch = prepare(remove_observed_per_sample(TimeSeriesDataset(X=X), 0.2, 0), "brits", torch.device("cpu")).batch(
        slice(0, 8))
    for core in (BRITSCore(3, BRITSConfig(hidden_size=8, dml=True, dml_attention_heads=2, dml_weight=0.5)),
                 DEARICore(3, DEARIConfig(hidden_size=8, n_layers=2, attention_heads=2, dml=True,
                                          dml_attention_heads=2, dml_weight=0.5))):
        out = core(batch)
        assert set(out.terms) == {"imputation", "dml"}
        assert torch.allclose(out.loss, out.terms["imputation"] + out.terms["dml"])
