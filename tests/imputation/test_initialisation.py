"""``parameter_init="reference"``: the DEARI/CSAI code's uniform re-draw (audit #6), and the default left alone."""

from __future__ import annotations

import math

import pytest
import torch

from gapray.imputation import DEARI, DEARIConfig

SMALL = dict(n_layers=2, hidden_size=12, attention_heads=4, attention_feedforward=32, device="cpu", seed=5)
N_FEATURES = 7


def _parameters(init: str, **fields: object) -> dict[str, torch.Tensor]:
    model = DEARI(DEARIConfig(**{**SMALL, **fields}, parameter_init=init))  # type: ignore[arg-type]
    model._build(N_FEATURES)
    assert model.core is not None
    return {name: p.detach().clone() for name, p in model.core.named_parameters()}


def test_reference_init_draws_every_weight_matrix_uniformly_within_one_over_root_fan_in() -> None:
    ours, reference = _parameters("pytorch"), _parameters("reference")
    # hand-computed bounds, 1/sqrt(size(1)) of the reference port's layout (ours is [directions, in, out])
    bounds = {"layers.0.rits.temporal_decay_h.linear.weight": 1 / math.sqrt(7),  # [H, D] there: 1/sqrt(D)
              "layers.0.rits.history_regression.weight": 1 / math.sqrt(12),
              "layers.0.rits.combination_weight.linear.weight": 1 / math.sqrt(14),
              "layers.0.rits.cell.weight_ih": 1 / math.sqrt(14),
              "initial_states.0.0.cls_token": 1.0,  # [1, 1, H]: U(-1, 1)
              "initial_states.0.0.encoder.layers.0.self_attn.in_proj_weight": 1 / math.sqrt(12),
              "initial_states.0.0.encoder.layers.1.linear2.weight": 1 / math.sqrt(32)}
    for name, bound in bounds.items():
        weight = reference[name]
        assert weight.abs().max() <= bound, name
        assert not torch.equal(weight, ours[name]), name
        if weight.numel() >= 200:  # a uniform draw comes close to its bound
            assert weight.abs().max() > 0.9 * bound, name
    for name, value in ours.items():  # every matrix re-drawn, every bias kept
        assert torch.equal(reference[name], value) == (value.dim() < 2), name


def test_encoder_layers_start_identical_by_default_and_independent_in_the_reference() -> None:
    """nn.TransformerEncoder deep-copies its layer; the reference's re-draw separates the copies."""
    first, second = (f"initial_states.0.0.encoder.layers.{i}.linear1.weight" for i in (0, 1))
    ours, reference = _parameters("pytorch"), _parameters("reference")
    assert torch.equal(ours[first], ours[second])
    assert not torch.equal(reference[first], reference[second])


def test_reference_init_keeps_the_bayesian_posterior_std() -> None:
    reference = _parameters("reference", bayesian=True, rho_init=-6.0)
    rhos = {name: p for name, p in reference.items() if name.endswith(".rho")}
    assert rhos and all(torch.all(p == -6.0) for p in rhos.values())
    mus = [p for name, p in reference.items() if name.endswith(".mu") and p.dim() >= 2]
    assert mus and all(p.abs().max() <= 1 / math.sqrt(p.shape[1]) for p in mus)


def test_reference_init_is_seeded_and_an_unknown_scheme_is_refused() -> None:
    assert all(torch.equal(a, b) for a, b in zip(_parameters("reference").values(),
                                                  _parameters("reference").values(), strict=True))
    with pytest.raises(ValueError, match="parameter_init must be 'pytorch' or 'reference', got 'xavier'"):
        DEARIConfig(parameter_init="xavier")  # type: ignore[arg-type]
