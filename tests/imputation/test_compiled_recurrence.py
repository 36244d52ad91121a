"""``compile_recurrence``: the RITS recurrence under ``torch.compile`` computes what eager computes."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from gapray.imputation import BRITSConfig, DEARIConfig
from gapray.imputation.brits.core import Batch, BRITSCore
from gapray.imputation.deari.core import DEARICore


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(8, 6, 4, generator=g) < 0.6).float()
    values = torch.randn(8, 6, 4, generator=g) * mask
    return Batch(values=values, mask=mask, deltas=torch.rand(2, 8, 6, 4, generator=g) * 3)


def _loss_and_grads(core: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    core.zero_grad(set_to_none=True)
    loss = core(batch).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in core.named_parameters() if p.grad is not None}


def test_compiled_training_steps_match_eager_and_the_model_survives_pickling() -> None:
    config = BRITSConfig(hidden_size=8, device="cpu")
    torch.manual_seed(0)
    eager = BRITSCore(4, config)
    compiled = copy.deepcopy(eager)
    compiled.layer.compile_recurrence = True
    batch = _batch()
    loss, grads = _loss_and_grads(eager, batch)
    compiled_loss, compiled_grads = _loss_and_grads(compiled, batch)
    assert compiled.layer._compiled_rits is not None  # the training step went through torch.compile
    assert eager.layer._compiled_rits is None
    assert torch.allclose(loss, compiled_loss, rtol=1e-5)
    assert grads.keys() == compiled_grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        assert torch.allclose(grad, compiled_grads[name], rtol=1e-4, atol=1e-6), name
    # a few SGD steps on other batches stay together (Adam would amplify rounding in ~zero gradients)
    for core in (eager, compiled):
        optimizer = torch.optim.SGD(core.parameters(), lr=0.05)
        for step in range(1, 4):
            optimizer.zero_grad()
            core(_batch(step)).loss.backward()
            optimizer.step()
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
    # inference stays eager and gives the eager imputation
    with torch.no_grad():
        assert compiled.layer.recurrence() is compiled.layer.rits
        assert torch.allclose(compiled(batch, with_loss=False).imputation, eager(batch, with_loss=False).imputation,
                              rtol=1e-5, atol=1e-6)
    # Ray and checkpoints pickle models: the compiled function is dropped, and rebuilt on the next step
    restored = pickle.loads(pickle.dumps(compiled))
    assert restored.layer._compiled_rits is None and restored.layer.compile_recurrence
    assert compiled.layer._compiled_rits is not None  # pickling did not strip the original
    assert torch.allclose(restored(batch).loss, eager(batch).loss, rtol=1e-5)


def test_compile_recurrence_comes_from_the_config() -> None:
    core = DEARICore(4, DEARIConfig(n_layers=2, hidden_size=8, attention_feedforward=16, device="cpu",
                                    compile_recurrence=True))
    assert all(layer.compile_recurrence for layer in core.layers)
    assert not BRITSCore(4, BRITSConfig(hidden_size=8, device="cpu")).layer.compile_recurrence


def test_without_a_cpp_compiler_the_error_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    core = BRITSCore(4, BRITSConfig(hidden_size=8, device="cpu", compile_recurrence=True))
    with pytest.raises(RuntimeError, match="compile_recurrence=True needs a C\\+\\+ compiler"):
        core(_batch())
    with torch.no_grad():  # inference never compiles
        assert torch.isfinite(core(_batch(), with_loss=False).imputation).all()
