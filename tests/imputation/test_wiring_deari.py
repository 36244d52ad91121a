"""DEARI with 2 and 3 layers against a reference that builds each layer's inputs by hand.

Layer ``l > 1`` (DEARI Sec. 4.1) reads the residual raw input ``m * x + (1 - m) * C^{l-1}`` and
starts each direction from ``h_0^l = CLS*``: the learnable token prepended to layer ``l-1``'s
hidden sequence in that direction, through the full transformer encoder, output at position 0
(Eqs. 15-18). The imputation is the mean of the layer imputations and the loss the mean of the
layer losses. The recurrences are the step-by-step reference of ``test_wiring_brits.py``; the
encoder is ``torch.nn.TransformerEncoder``'s own full forward pass (the library computes only
the position it reads). Dropout is off (``eval()``), so values and gradients are deterministic.
"""

from __future__ import annotations

import pytest
import torch
from test_wiring_brits import ATOL, RTOL, D, H, assert_same_gradients, make_batch, reference_brits
from torch import Tensor

from gapray.imputation import DEARIConfig
from gapray.imputation.brits.core import Batch
from gapray.imputation.deari.core import AttentionInitialState, DEARICore, cls_initial_state
from gapray.imputation.layers import encode_at


def config(n_layers: int, cell: str = "lstm", attention_init: str = "cls") -> DEARIConfig:
    return DEARIConfig(hidden_size=H, cell=cell, n_layers=n_layers, attention_heads=2, attention_layers=2,
                       attention_feedforward=16, attention_init=attention_init, consistency_weight=0.2)


def reference_initial_state(core: DEARICore, layer: int, direction: int, hidden: Tensor) -> Tensor:
    """``h_0^layer`` of one direction from the previous layer's hidden sequence ``[B, T, H]`` (Eqs. 15-18)."""
    attention = core.initial_states[layer - 1][direction]
    mode = core.config.attention_init
    if mode == "cls":
        tokens = torch.cat([attention.cls_token.expand(hidden.shape[0], -1, -1), hidden], dim=1)  # Eq. 15
        return attention.encoder(tokens)[:, 0]  # Eqs. 16-18: the token's output
    encoded = attention.encoder(hidden)
    return encoded[:, -1] if mode == "last" else encoded.mean(dim=1)


def reference_deari(core: DEARICore, batch: Batch) -> dict[str, object]:
    x, m = batch.values, batch.mask
    values, h0 = x, None
    layers = []
    for index, layer in enumerate(core.layers):
        if index > 0:
            previous = layers[-1]
            values = m * x + (1.0 - m) * previous["imputation"]  # residual raw input
            h0 = torch.stack([reference_initial_state(core, index, d, previous["hidden"][d]) for d in range(2)])
        out = reference_brits(layer.rits, values, batch, core.config.cell, core.config, h0)
        out["values"], out["h0"] = values, h0
        layers.append(out)
    return {"imputation": torch.stack([o["imputation"] for o in layers]).mean(0),
            "loss": torch.stack([o["loss"] for o in layers]).mean(), "layers": layers}


def layer_inputs(core: DEARICore) -> tuple[list[Tensor], list[object]]:
    """Record what each layer is called with (its ``values`` argument) during a forward pass."""
    seen: list[Tensor] = []
    handles = [layer.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach()))
               for layer in core.layers]
    return seen, handles


@pytest.mark.parametrize(("n_layers", "cell", "attention_init"),
                         [(2, "lstm", "cls"), (3, "gru", "cls"), (3, "lstm", "mean"), (2, "gru", "last")])
def test_deari_matches_the_layer_by_layer_reference(n_layers: int, cell: str, attention_init: str) -> None:
    torch.manual_seed(10 + n_layers)
    core = DEARICore(D, config(n_layers, cell, attention_init)).eval()
    batch = make_batch(seed=n_layers)
    seen, handles = layer_inputs(core)
    out = core(batch)
    for handle in handles:
        handle.remove()
    ref = reference_deari(core, batch)
    torch.testing.assert_close(out.imputation, ref["imputation"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.loss, ref["loss"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.terms["imputation"], ref["loss"], atol=ATOL, rtol=RTOL)
    assert len(out.layers) == n_layers
    for got, want in zip(out.layers, ref["layers"]):
        torch.testing.assert_close(got.imputation, want["imputation"], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(got.hidden_states, want["hidden"], atol=ATOL, rtol=RTOL)
    # each deeper layer really starts from its own attention state (not zeros, not the other direction's)
    for want in ref["layers"][1:]:
        assert want["h0"].abs().min() > 0 and not torch.allclose(want["h0"][0], want["h0"][1])
    # the residual raw input each layer is called with: x for the first, m*x + (1-m)*C^{l-1} after.
    # RITS reads a layer's input only as m * x (Eqs. 4, 9) and its loss only where m = 1, so the
    # missing entries of the residual do not change any output above; this pins the input itself.
    assert len(seen) == n_layers
    for got, want in zip(seen, ref["layers"]):
        torch.testing.assert_close(got, want["values"].detach(), atol=ATOL, rtol=RTOL)
    assert_same_gradients(core, out.loss, ref["loss"])
    names = [name for name, _ in core.named_parameters()]
    assert any("cls_token" in name for name in names) == (attention_init == "cls")  # a token only for CLS
    with torch.no_grad():  # inference: the same imputation and layers, no loss terms
        inference = core(batch, with_loss=False)
    torch.testing.assert_close(inference.imputation, out.imputation.detach())
    assert inference.terms == {} and float(inference.loss) == 0.0 and len(inference.layers) == n_layers


def test_a_deeper_layer_depends_on_its_attention_state_and_layer_one_does_not() -> None:
    """Layer 2 differs from layer 1 (own weights, CLS start); perturbing the backward direction's
    attention (CLS token and encoder) changes layer 2's backward hidden states but never layer 1."""
    torch.manual_seed(20)
    core = DEARICore(D, config(2)).eval()
    batch = make_batch(seed=20)
    with torch.no_grad():
        out = core(batch)
        assert not torch.allclose(out.layers[0].imputation, out.layers[1].imputation, atol=1e-4)
        for p in core.initial_states[0][1].parameters():  # the backward direction's attention only
            p.add_(0.5)
        changed = core(batch)
    assert torch.equal(changed.layers[0].imputation, out.layers[0].imputation)
    assert not torch.allclose(changed.layers[1].hidden_states[1], out.layers[1].hidden_states[1], atol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("final_norm", [False, True])
def test_encode_at_equals_the_full_encoder_at_any_position(norm_first: bool, final_norm: bool) -> None:
    """The one-position read-out behind the CLS state (``layers.encode_at``) equals the full
    three-layer encoder's output there, for post- and pre-norm layers, with or without a final norm."""
    torch.manual_seed(30)
    layer = torch.nn.TransformerEncoderLayer(H, 2, 16, batch_first=True, norm_first=norm_first)
    encoder = torch.nn.TransformerEncoder(layer, 3, norm=torch.nn.LayerNorm(H) if final_norm else None,
                                          enable_nested_tensor=False).eval()
    tokens = torch.randn(3, 5, H)
    with torch.no_grad():
        full = encoder(tokens)
        for position in (0, 2, 4, -1):
            torch.testing.assert_close(encode_at(encoder, tokens, position), full[:, position], atol=ATOL, rtol=RTOL)


def test_initial_state_modes_are_checked() -> None:
    encoder = DEARICore(D, config(2)).initial_states[0][0].encoder
    hidden = torch.randn(2, 4, H)
    with pytest.raises(ValueError, match=r"^mode 'cls' needs a cls_token$"):
        cls_initial_state(hidden, encoder, "cls", None)
    with pytest.raises(ValueError, match=r"^attention_init must be 'cls', 'last' or 'mean', got 'first'$"):
        cls_initial_state(hidden, encoder, "first")


@pytest.mark.parametrize("attention_init", ["cls", "mean"])
def test_fast_attention_reaches_every_initial_state_encoder(attention_init: str) -> None:
    """``fast_attention``: each direction's initial-state encoder has the 16-bit dropouts and runs under
    bfloat16 autocast, so ``h_0`` is the fp32 one up to bf16 rounding but not equal to it, in the hidden
    states' dtype (at inference the fused encoder returns bf16 for fp32 input, the one-position
    read-out fp32 for fp16 input)."""
    torch.manual_seed(40)
    fast = DEARICore(D, config(3, attention_init=attention_init).replace(fast_attention=True)).eval()
    exact = DEARICore(D, config(3, attention_init=attention_init)).eval()
    exact.load_state_dict(fast.state_dict())
    hidden = torch.randn(3, 4, H)
    for transition in range(2):
        for direction in range(2):
            state = fast.initial_states[transition][direction]
            assert {type(getattr(block, name)).__name__ for block in state.encoder.layers
                    for name in ("dropout", "dropout1", "dropout2")} == {"FastDropout"}
            with torch.no_grad():
                a, b = state(hidden), exact.initial_states[transition][direction](hidden)
                assert state(hidden.half()).dtype == torch.float16
            assert a.dtype == torch.float32
            assert torch.allclose(a, b, atol=0.05) and not torch.allclose(a, b, atol=1e-4)


def test_an_initial_state_built_with_defaults_is_the_paper_s_fp32_encoder() -> None:
    """``AttentionInitialState(108, mode, 1, 4)``: PyTorch's default layer (feed-forward 2048, dropout 0.1),
    492,044 parameters (DEARI Sec. 5.5), fp32 dropouts."""
    state = AttentionInitialState(108, "mean", 1, 4)
    assert sum(p.numel() for p in state.encoder.parameters()) == 492_044
    assert not state.fast and {type(block.dropout).__name__ for block in state.encoder.layers} == {"Dropout"}
