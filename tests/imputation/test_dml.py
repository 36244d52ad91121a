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


def head_settings(head: MetricLearningLoss) -> dict[str, object]:
    """What a DML head was built with, read from the modules that use it."""
    return {"pooling": head.pooling, "fast": head.fast, "margin": head.miner.epsilon, "alpha": head.loss.alpha,
            "beta": head.loss.beta, "base": head.loss.base, "layers": len(head.encoder.layers),
            "heads": [layer.self_attn.num_heads for layer in head.encoder.layers],
            "feedforward": [layer.linear1.out_features for layer in head.encoder.layers],
            "dropouts": [type(getattr(layer, name)).__name__ for layer in head.encoder.layers
                         for name in ("dropout", "dropout1", "dropout2")],
            "cls_token": None if head.cls_token is None else head.cls_token.numel()}


def assert_same_head(head: MetricLearningLoss, reference: MetricLearningLoss) -> None:
    """Same settings, same parameters (strict load) and the same loss on the same batch."""
    assert head_settings(head) == head_settings(reference)
    reference.load_state_dict(head.state_dict())
    head.eval(), reference.eval()
    generator = torch.Generator().manual_seed(3)
    hidden_f, hidden_b = (torch.randn(6, 5, head.encoder.layers[0].linear1.in_features, generator=generator)
                          for _ in range(2))
    assert torch.equal(head(hidden_f, hidden_b), reference(hidden_f, hidden_b))


def test_every_dml_setting_of_the_config_reaches_the_head() -> None:
    """Each DML field away from its default (and the fast path on) must reach the head the core builds:
    a head built from the same values by hand is the same head."""
    config = BRITSConfig(hidden_size=8, dml=True, dml_pooling="last", dml_margin=0.35, dml_alpha=3.0, dml_beta=20.0,
                         dml_base=0.3, dml_attention_layers=2, dml_attention_heads=2, attention_feedforward=12,
                         fast_attention=True)
    torch.manual_seed(0)
    head = BRITSCore(3, config).metric_learning
    reference = MetricLearningLoss(8, pooling="last", margin=0.35, alpha=3.0, beta=20.0, base=0.3,
                                   attention_layers=2, attention_heads=2, attention_feedforward=12, fast=True)
    assert head_settings(head) == {"pooling": "last", "fast": True, "margin": 0.35, "alpha": 3.0, "beta": 20.0,
                                   "base": 0.3, "layers": 2, "heads": [2, 2], "feedforward": [12, 12],
                                   "dropouts": ["FastDropout"] * 6, "cls_token": None}
    assert_same_head(head, reference)


def test_the_head_defaults_are_deari_s_defaults() -> None:
    """``MetricLearningLoss(H)`` is the head of a default DEARI config: CLS pooling with one learned token
    (Eq. 19), margin 0.1, the library's Multi-Similarity scales, one 4-head encoder layer of PyTorch's
    default width, fp32."""
    torch.manual_seed(0)
    head = DEARICore(3, DEARIConfig(hidden_size=8, n_layers=1, dml=True)).metric_learning
    assert head_settings(head) == {"pooling": "cls", "fast": False, "margin": 0.1, "alpha": 2.0, "beta": 50.0,
                                   "base": 0.5, "layers": 1, "heads": [4], "feedforward": [2048],
                                   "dropouts": ["Dropout"] * 3, "cls_token": 8}
    assert_same_head(head, MetricLearningLoss(8))


@pytest.mark.parametrize("pooling", ["cls", "last", "mean"])
def test_the_fast_head_encodes_under_bf16_autocast_and_returns_the_input_dtype(pooling: str) -> None:
    """``fast``: the encoder runs under bfloat16 autocast: the representation is the fp32 one up to bf16
    rounding but not equal to it, and it comes back in the hidden states' dtype (at inference the fused
    encoder returns bf16 for fp32 input, the one-position read-out fp32 for fp16 input)."""
    torch.manual_seed(0)
    fast = MetricLearningLoss(8, pooling=pooling, attention_heads=2, attention_feedforward=16, fast=True).eval()
    exact = MetricLearningLoss(8, pooling=pooling, attention_heads=2, attention_feedforward=16).eval()
    exact.load_state_dict(fast.state_dict())
    hidden = torch.randn(4, 5, 8)
    with torch.no_grad():
        a, b = fast.representation(hidden), exact.representation(hidden)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = exact.representation(hidden)
    assert a.dtype == torch.float32 and torch.equal(a, autocast)
    assert torch.allclose(a, b, atol=0.05) and not torch.allclose(a, b, atol=1e-4)
    with torch.no_grad():
        assert fast.representation(hidden.half()).dtype == torch.float16
