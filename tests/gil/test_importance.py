"""GIL Eq. 4: the encoder weight gradient is sum_i Delta_i (x_i * a_i)^T / B, checked against
explicit per-sample (and per-step) gradients from torch.func.vmap(grad)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from gapray.gil.importance import DeferredImportance
from gapray.gil.predictors import LSTMPredictor, MLPPredictor

B, D, C = 6, 5, 3


def _plain_grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _mlp_expected(model: MLPPredictor, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    params = {k: v.detach() for k, v in model.named_parameters()}

    def sample_loss(w_enc: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**params, "encoder.weight": w_enc}, (xi[None],)).logits
        return F.cross_entropy(logits, yi[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params["encoder.weight"], x, y)  # [B, e, d]
    assert per_sample.shape == (B, *params["encoder.weight"].shape)
    return (per_sample * a[:, None, :]).sum(0) / B


@pytest.mark.parametrize("path", ["split", "deferred"])
def test_mlp_encoder_gradient_is_importance_weighted_per_sample(path: str) -> None:
    torch.manual_seed(0)
    model = MLPPredictor(D, C, hidden_sizes=(7, 4))
    x, y, a = torch.randn(B, D), torch.randint(0, C, (B,)), torch.rand(B, D)
    if path == "split":
        logits = model(x, importance=a).logits
    else:
        deferred = DeferredImportance(x)
        logits = model(deferred.input).logits
        deferred.apply(a)
    got = _plain_grads(model, F.cross_entropy(logits, y))
    plain = _plain_grads(model, F.cross_entropy(model(x).logits, y))

    torch.testing.assert_close(got["encoder.weight"], _mlp_expected(model, x, y, a), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got["encoder.weight"], plain["encoder.weight"])
    for name in plain:
        if name != "encoder.weight":
            torch.testing.assert_close(got[name], plain[name], rtol=1e-6, atol=1e-7)


def _lstm_reference(model: LSTMPredictor, w_steps: torch.Tensor, x: torch.Tensor, length: torch.Tensor
                    ) -> torch.Tensor:
    """Appendix A Eq. 6-7 for one sequence with a separate copy of W_enc per step (so the
    gradient w.r.t. w_steps[t] is the step's outer product Delta_t x_t^T)."""
    H = model.hidden_size
    h, c, outputs = x.new_zeros(H), x.new_zeros(H), []
    for t in range(x.shape[0]):
        gates = w_steps[t] @ x[t] + model.bias_ih + model.weight_hh @ h + model.bias_hh
        i, f, g, o = gates.split(H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    last = torch.stack(outputs).index_select(0, (length - 1)[None])[0]
    return model.output(last)


@pytest.mark.parametrize("path", ["split", "deferred"])
def test_lstm_input_weight_gradient_is_importance_weighted_per_sample_and_step(path: str) -> None:
    torch.manual_seed(1)
    T, H = 4, 3
    model = LSTMPredictor(D, C, hidden_size=H)
    x, y, a = torch.randn(B, T, D), torch.randint(0, C, (B,)), torch.rand(B, T, D)
    lengths = torch.tensor([4, 2, 3, 4, 1, 4])
    if path == "split":
        logits = model(x, lengths, importance=a).logits
    else:
        deferred = DeferredImportance(x)
        logits = model(deferred.input, lengths).logits
        deferred.apply(a)
    got = _plain_grads(model, F.cross_entropy(logits, y))
    plain = _plain_grads(model, F.cross_entropy(model(x, lengths).logits, y))

    w_steps = model.weight_ih.detach().expand(T, *model.weight_ih.shape).clone()
    with torch.no_grad():  # the explicit recurrence reproduces the fused kernel's forward
        reference = torch.stack([_lstm_reference(model, w_steps, x[i], lengths[i]) for i in range(B)])
        torch.testing.assert_close(reference, model(x, lengths).logits, rtol=1e-5, atol=1e-6)

    def sample_loss(w: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor, li: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(_lstm_reference(model, w, xi, li)[None], yi[None])

    per_step = vmap(grad(sample_loss), in_dims=(None, 0, 0, 0))(w_steps, x, y, lengths)  # [B, T, 4H, d]
    expected = (per_step * a[:, :, None, :]).sum(dim=(0, 1)) / B
    torch.testing.assert_close(got["weight_ih"], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got["weight_ih"], plain["weight_ih"])
    for name in ("weight_hh", "bias_ih", "bias_hh", "output.weight", "output.bias"):
        torch.testing.assert_close(got[name], plain[name], rtol=1e-6, atol=1e-7)


def test_importance_leaves_forward_values_unchanged() -> None:
    torch.manual_seed(2)
    model = LSTMPredictor(D, C, hidden_size=3)
    x, a = torch.randn(B, 4, D), torch.rand(B, 4, D)
    torch.testing.assert_close(model(x, importance=a).logits, model(x).logits)


def test_deferred_importance_rejects_wrong_shape_and_second_application() -> None:
    deferred = DeferredImportance(torch.ones(2, 3))
    with pytest.raises(ValueError, match="shape"):
        deferred.apply(torch.ones(3, 2))
    deferred.apply(torch.full((2, 3), 0.5))
    assert torch.equal(deferred.input, torch.full((2, 3), 0.5))
    with pytest.raises(RuntimeError, match="already applied"):
        deferred.apply(torch.ones(2, 3))


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_session_update_is_the_same_with_and_without_the_deferred_forward(kind: str) -> None:
    from gapray.gil.predictors import build_predictor
    from gapray.gil.training import PredictorSession, TaskTensors, TrainingConfig, deferred_importance_is_exact

    torch.manual_seed(3)
    shape = (20, D) if kind == "mlp" else (20, 4, D)
    data = TaskTensors(torch.randn(shape), torch.ones(shape), torch.randint(0, C, (20,)),
                       None if kind == "mlp" else torch.full((20,), 4))
    predictor = build_predictor(kind, D, C, hidden_sizes=(7,), lstm_hidden_size=3)
    assert deferred_importance_is_exact(predictor, data)  # true on CPU: the fast path is used
    sessions = [PredictorSession(copy.deepcopy(predictor), data, TrainingConfig(), deferred=flag)
                for flag in (True, False)]
    importance = torch.rand(shape)
    for session in sessions:
        session.update(session.forward_for_update(torch.arange(8)), importance[:8])
    for a, b in zip(sessions[0].predictor.parameters(), sessions[1].predictor.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
