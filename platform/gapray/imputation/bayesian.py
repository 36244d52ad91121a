"""Bayesian recurrent cells for Bayesian BRITS/DEARI (DEARI sec. 4.3, Eqs. 22-26).

Every weight of the recurrent cell (``W_t``, ``U_h`` and ``b_h`` of Eq. 25: here the torch
layout ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) is a Gaussian
``w = mu + softplus(rho) * eps`` with ``eps ~ N(0, 1)`` (Eqs. 22-24,
:func:`sample_gaussian_weight`). Training is Bayes by Backprop (Eq. 26): data loss + KL weight
x ``KL(q || prior)``; the KL is closed form for a Gaussian prior (:func:`gaussian_kl`) and a
Monte Carlo estimate ``log q(w) - log p(w)`` for a scale-mixture prior (Blundell et al. 2015).

Modes of a cell:

- **frozen** (default; no draw active): the posterior means act as the weights, so the cell is
  exactly ``nn.LSTMCell`` / ``nn.GRUCell`` with ``weight = mu``. This is the "freeze" of the
  paper's freeze/unfreeze schedule and the ``bayesian=False`` behaviour of a copied model.
- **sampling**: :func:`sampled_weights` (a context manager over a whole model) draws ``eps`` for
  ``K`` weight samples **once**, and every call of the cell inside the context reuses that draw.
  A RITS pass calls its cell once per time step, so the weights are sampled once per batch
  pass (per sequence), not per time step: one Monte Carlo sample is one whole network, as in
  Bayes by Backprop. Re-enter the context for a fresh draw (every optimisation step).

Batched Monte Carlo: with ``K`` samples drawn, the cell expects its input batch to be the
original batch repeated ``K`` times, sample-major (rows ``k*B .. (k+1)*B - 1`` belong to weight
sample ``k``; :func:`repeat_for_samples` builds it, :func:`split_samples` undoes it), and runs
all ``K`` networks in one ``baddbmm`` per gate projection. ``K`` samples therefore cost one
pass over a ``K``-times larger batch, with no Python loop over samples or records. At inference
the RITS terms that depend on the inputs only (decays, combination weights, masks) are computed
once per record and shared by the ``K`` copies, and no loss is built
(:meth:`gapray.imputation.brits.core.Batch.recurrence_inputs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from gapray.imputation.config import BRITSConfig

KLScheme = Literal["uniform", "blundell"]


@dataclass(frozen=True)
class BayesianConfig:
    """Variational posterior and prior of the Bayesian recurrent weights."""

    prior_sigma: float = 0.1
    """Standard deviation of the Gaussian prior N(0, sigma^2) (reference: 0.1)."""
    prior: Literal["gaussian", "scale_mixture"] = "gaussian"
    """``gaussian`` (closed-form KL) or Blundell's ``scale_mixture`` (Monte Carlo KL)."""
    mixture_pi: float = 0.5
    """Scale mixture: weight of the wide component."""
    mixture_sigma1: float = 1.0
    """Scale mixture: standard deviation of the wide component (Blundell: exp(0))."""
    mixture_sigma2: float = math.exp(-6.0)
    """Scale mixture: standard deviation of the narrow component (Blundell: exp(-6))."""
    rho_init: float = -6.0
    """Initial ``rho`` of every posterior (reference: -6, i.e. std softplus(-6) = 0.0025)."""
    mu_init_std: float = 0.1
    """Initial posterior means are drawn from N(0, mu_init_std^2) (reference: 0.1)."""

    def __post_init__(self) -> None:
        if self.prior not in ("gaussian", "scale_mixture"):
            raise ValueError(f"BayesianConfig.prior must be 'gaussian' or 'scale_mixture', got {self.prior!r}")
        for name in ("prior_sigma", "mixture_sigma1", "mixture_sigma2", "mu_init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BayesianConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.mixture_pi < 1.0:
            raise ValueError(f"BayesianConfig.mixture_pi must lie in (0, 1), got {self.mixture_pi}")


# --------------------------------------------------------------------------- equations


def sample_gaussian_weight(mu: torch.Tensor, rho: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """DEARI Eqs. 22-24: ``w = N(0, 1) * log(1 + e^rho) + mu``, reparameterised with ``eps``.

    ``eps`` may carry leading sample dimensions (``[K, *mu.shape]``).
    """
    return mu + F.softplus(rho) * eps


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_sigma: float) -> torch.Tensor:
    """Closed-form ``KL(N(mu, sigma^2) || N(0, prior_sigma^2))`` summed over all entries.

    Per entry: ``log(prior_sigma / sigma) + (sigma^2 + mu^2) / (2 prior_sigma^2) - 1/2``.
    """
    return (math.log(prior_sigma) - torch.log(sigma) + (sigma.pow(2) + mu.pow(2)) / (2.0 * prior_sigma**2) - 0.5).sum()


def gaussian_log_prob(w: torch.Tensor, mu: torch.Tensor | float, sigma: torch.Tensor | float) -> torch.Tensor:
    """Element-wise ``log N(w; mu, sigma^2)``."""
    sigma_t = torch.as_tensor(sigma, dtype=w.dtype, device=w.device)
    return -0.5 * math.log(2.0 * math.pi) - torch.log(sigma_t) - (w - mu).pow(2) / (2.0 * sigma_t.pow(2))


def scale_mixture_log_prob(w: torch.Tensor, pi: float, sigma1: float, sigma2: float) -> torch.Tensor:
    """Element-wise log density of Blundell's prior ``pi N(0, s1^2) + (1 - pi) N(0, s2^2)``."""
    return torch.logaddexp(
        math.log(pi) + gaussian_log_prob(w, 0.0, sigma1), math.log1p(-pi) + gaussian_log_prob(w, 0.0, sigma2)
    )


def monte_carlo_kl(w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, config: BayesianConfig) -> torch.Tensor:
    """DEARI Eq. 26's complexity terms ``log Q(w | theta) - log p(w)`` summed, averaged over samples.

    ``w`` is ``[K, *mu.shape]`` (samples drawn with :func:`sample_gaussian_weight`).
    """
    log_q = gaussian_log_prob(w, mu, sigma)
    if config.prior == "gaussian":
        log_p = gaussian_log_prob(w, 0.0, config.prior_sigma)
    else:
        log_p = scale_mixture_log_prob(w, config.mixture_pi, config.mixture_sigma1, config.mixture_sigma2)
    return (log_q - log_p).sum() / w.shape[0]


def minibatch_kl_weight(batch_index: int, num_batches: int, scheme: KLScheme = "uniform") -> float:
    """Share of the KL term given to minibatch ``batch_index`` (0-based) of ``num_batches``.

    Blundell et al. (2015, sec. 3.4): the KL is spread over the ``M`` minibatches of an epoch,
    either ``uniform`` (``1 / M``) or ``blundell`` (``pi_i = 2^(M-i) / (2^M - 1)`` for
    ``i = 1..M``: early minibatches carry most of the prior, the weights sum to one).
    The reference port instead multiplies the KL by ``1 / (2^N - 1)`` with ``N`` the number of
    batches, computed once, on every step: that is only the *last* ``pi_i``, about 0 for any
    real ``N``, so its "Bayesian" training ignores the prior. That is a bug; not reproduced.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    if not 0 <= batch_index < num_batches:
        raise ValueError(f"batch_index must lie in [0, {num_batches}), got {batch_index}")
    if scheme == "uniform":
        return 1.0 / num_batches
    if scheme == "blundell":
        # 2^(M-i)/(2^M-1) with i = batch_index + 1, written to avoid overflow for large M.
        exponent = -(batch_index + 1)
        return math.ldexp(1.0, exponent) / -math.expm1(-num_batches * math.log(2.0))
    raise ValueError(f"KL scheme must be 'uniform' or 'blundell', got {scheme!r}")


# --------------------------------------------------------------------------- modules


class GaussianWeight(nn.Module):
    """One variational weight tensor ``q(w) = N(mu, softplus(rho)^2)`` (Eqs. 22-24).

    Holds ``mu`` and ``rho`` as parameters and, while a draw is active, the noise ``eps``
    ``[K, *shape]`` (not saved in the state dict).
    """

    def __init__(self, shape: tuple[int, ...], config: BayesianConfig) -> None:
        super().__init__()
        self.config = config
        self.mu = nn.Parameter(torch.empty(shape))
        self.rho = nn.Parameter(torch.empty(shape))
        self.eps: torch.Tensor | None = None
        self._direction_major: torch.Tensor | None = None  # inference-only cache of the draw
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.mu.normal_(0.0, self.config.mu_init_std)
            self.rho.fill_(self.config.rho_init)

    @property
    def sigma(self) -> torch.Tensor:
        """Posterior standard deviation ``softplus(rho)``."""
        return F.softplus(self.rho)

    @property
    def n_samples(self) -> int:
        """Number of weight samples drawn (0 when frozen)."""
        return 0 if self.eps is None else self.eps.shape[0]

    def draw(self, n_samples: int, generator: torch.Generator | None = None) -> None:
        """Draw ``eps`` for ``n_samples`` weight samples; they stay until :meth:`clear`."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.eps = torch.randn(
            (n_samples, *self.mu.shape), generator=generator, dtype=self.mu.dtype, device=self.mu.device
        )
        self._direction_major = None

    def clear(self) -> None:
        """Back to frozen: the mean acts as the weight."""
        self.eps = None
        self._direction_major = None

    def samples(self) -> torch.Tensor:
        """``[K, *shape]`` sampled weights (Eqs. 22-24); requires an active draw."""
        if self.eps is None:
            raise RuntimeError("no weight draw is active: use gapray.imputation.bayesian.sampled_weights(...)")
        return sample_gaussian_weight(self.mu, self.rho, self.eps)

    def direction_major(self) -> torch.Tensor:
        """The sampled weights ``[n_dir, a, b]``-shaped parameter as ``[n_dir * K, a, b]``
        (direction-major, for one ``baddbmm`` over directions and samples).

        Without autograd (inference) the result is cached for the draw, so a recurrence reuses it
        at every step; with autograd it is rebuilt per call so each step keeps its own graph
        edge to ``mu`` and ``rho``.
        """
        if self._direction_major is not None and not torch.is_grad_enabled():
            return self._direction_major
        samples = self.samples()
        batched = samples.transpose(0, 1).reshape(-1, *samples.shape[2:])
        if not torch.is_grad_enabled():
            self._direction_major = batched
        return batched

    def kl(self) -> torch.Tensor:
        """``KL(q || prior)``: closed form for the Gaussian prior; Monte Carlo for the scale
        mixture (on the active draw, else on one fresh sample)."""
        if self.config.prior == "gaussian":
            return gaussian_kl(self.mu, self.sigma, self.config.prior_sigma)
        eps = self.eps if self.eps is not None else torch.randn_like(self.mu).unsqueeze(0)
        return monte_carlo_kl(sample_gaussian_weight(self.mu, self.rho, eps), self.mu, self.sigma, self.config)


class BayesianRecurrentCell(nn.Module):
    """Shared machinery of :class:`BayesianLSTMCell` and :class:`BayesianGRUCell`.

    Layout follows :mod:`gapray.imputation.layers` (the deterministic cells of Eq. 10): a
    leading direction axis (forward and backward RITS in one batched recurrence), weights stored
    transposed for ``baddbmm``: ``weight_ih [n_dir, I, G*H]``, ``weight_hh [n_dir, H, G*H]``,
    ``bias_ih``/``bias_hh [n_dir, 1, G*H]``, gates in torch's order; each a
    :class:`GaussianWeight`. ``b_h`` of Eq. 25 is ``bias_ih + bias_hh`` (both kept: the GRU's
    candidate gate needs ``bias_hh`` on its own). Inputs are ``[n_dir, B, I]``; with
    ``n_directions=1`` plain ``[B, I]`` inputs are accepted too, so the cell is a drop-in for
    ``nn.LSTMCell``/``nn.GRUCell``.
    """

    n_gates: int = 0

    def __init__(
        self, input_size: int, hidden_size: int, config: BayesianConfig | None = None, n_directions: int = 1
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1 or n_directions < 1:
            raise ValueError(
                "input_size, hidden_size and n_directions must be >= 1, "
                f"got {input_size}, {hidden_size}, {n_directions}"
            )
        self.input_size, self.hidden_size, self.n_directions = input_size, hidden_size, n_directions
        self.config = config or BayesianConfig()
        gates = self.n_gates * hidden_size
        self.weight_ih = GaussianWeight((n_directions, input_size, gates), self.config)
        self.weight_hh = GaussianWeight((n_directions, hidden_size, gates), self.config)
        self.bias_ih = GaussianWeight((n_directions, 1, gates), self.config)
        self.bias_hh = GaussianWeight((n_directions, 1, gates), self.config)

    def gaussian_weights(self) -> tuple[GaussianWeight, ...]:
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    @property
    def frozen(self) -> bool:
        """True when no weight draw is active (the posterior means act as the weights)."""
        return self.weight_ih.eps is None

    @property
    def n_samples(self) -> int:
        return self.weight_ih.n_samples

    def kl(self) -> torch.Tensor:
        """``KL(q || prior)`` of all the cell's weights."""
        return torch.stack([w.kl() for w in self.gaussian_weights()]).sum()

    @torch.no_grad()
    def load_means_from(self, cell: nn.Module) -> None:
        """Copy a deterministic cell's weights into the posterior means.

        Accepts the direction-batched cells of :mod:`gapray.imputation.layers` (same layout) and
        ``nn.LSTMCell``/``nn.GRUCell`` (``n_directions=1``; weights transposed).
        """
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            source = getattr(cell, name, None)
            if source is None:
                raise ValueError(f"{type(cell).__name__} has no {name}: cannot copy it into {type(self).__name__}")
            target = getattr(self, name).mu
            if isinstance(cell, (nn.LSTMCell, nn.GRUCell)):
                source = source.reshape(source.shape[0], -1).T.unsqueeze(0)
            if source.shape != target.shape:
                raise ValueError(
                    f"{type(cell).__name__}.{name} has shape {tuple(source.shape)}, "
                    f"{type(self).__name__} expects {tuple(target.shape)}"
                )
            target.copy_(source)

    def _project(self, x: torch.Tensor, weight: GaussianWeight, bias: GaussianWeight) -> torch.Tensor:
        """``x W + b`` per direction, with the means (frozen) or all ``K`` sampled weights at once.

        Sampling: ``x`` is ``[n_dir, K*B, I]`` with sample-major rows; the ``n_dir * K`` weight
        sets run as one ``baddbmm`` batch.
        """
        if self.frozen:
            return torch.baddbmm(bias.mu, x, weight.mu)
        out = torch.baddbmm(bias.direction_major(), self._sample_batches(x), weight.direction_major())
        return out.reshape(x.shape[0], x.shape[1], -1)

    def _sample_batches(self, x: torch.Tensor) -> torch.Tensor:
        """``[n_dir, K*B, I]`` (sample-major rows) as ``[n_dir * K, B, I]``, one batch per weight set."""
        k = self.n_samples
        n_dir, rows, width = x.shape
        if rows % k:
            raise ValueError(
                f"{type(self).__name__}: a batch of {rows} rows is not {k} weight samples x a batch; "
                "repeat the batch with repeat_for_samples(x, n_samples)"
            )
        return x.reshape(n_dir * k, rows // k, width)

    def _check_input(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``x`` as ``[n_dir, B, I]`` and whether it came without the direction axis."""
        squeeze = x.dim() == 2
        if squeeze:
            if self.n_directions != 1:
                raise ValueError(
                    f"{type(self).__name__} has {self.n_directions} directions: input must be [n_dir, B, I]"
                )
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[0] != self.n_directions or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: input of shape {tuple(x.shape)}, expected "
                f"[{self.n_directions}, B, {self.input_size}]"
            )
        return x, squeeze


class BayesianLSTMCell(BayesianRecurrentCell):
    """Bayesian Eq. 10 with an LSTM: ``(input, (h, c) | None) -> (h', c')``; gates i, f, g, o."""

    n_gates = 4

    def forward(
        self,
        input: torch.Tensor,  # noqa: A002  (torch's cell signature)
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, squeeze = self._check_input(input)
        if hx is None:
            zeros = x.new_zeros(x.shape[0], x.shape[1], self.hidden_size)
            h, c = zeros, zeros
        else:
            h, c = (t.unsqueeze(0) for t in hx) if squeeze else hx
        if self.frozen:  # exactly the deterministic DirectionalLSTMCell's arithmetic
            gates = torch.baddbmm(
                torch.baddbmm(self.bias_ih.mu + self.bias_hh.mu, x, self.weight_ih.mu), h, self.weight_hh.mu
            )
        else:  # the same two fused products, over all direction x sample weight sets at once
            bias = self.bias_ih.direction_major() + self.bias_hh.direction_major()
            gates = torch.baddbmm(
                torch.baddbmm(bias, self._sample_batches(x), self.weight_ih.direction_major()),
                self._sample_batches(h),
                self.weight_hh.direction_major(),
            ).reshape(x.shape[0], x.shape[1], -1)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h.squeeze(0), c.squeeze(0)) if squeeze else (h, c)


class BayesianGRUCell(BayesianRecurrentCell):
    """Bayesian Eq. 10 with a GRU: ``(input, h | None) -> h'``; gates r, z, n as in torch."""

    n_gates = 3

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:  # noqa: A002
        x, squeeze = self._check_input(input)
        if hx is None:
            h = x.new_zeros(x.shape[0], x.shape[1], self.hidden_size)
        else:
            h = hx.unsqueeze(0) if squeeze else hx
        gi = self._project(x, self.weight_ih, self.bias_ih)
        gh = self._project(h, self.weight_hh, self.bias_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(torch.addcmul(i_n, r, h_n))
        h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
        return h.squeeze(0) if squeeze else h


def make_bayesian_cell(
    kind: str, input_size: int, hidden_size: int, config: BayesianConfig | None = None, n_directions: int = 1
) -> BayesianRecurrentCell:
    """A Bayesian LSTM or GRU cell, called like the deterministic cell of that kind."""
    if kind == "lstm":
        return BayesianLSTMCell(input_size, hidden_size, config, n_directions)
    if kind == "gru":
        return BayesianGRUCell(input_size, hidden_size, config, n_directions)
    raise ValueError(f"cell kind must be 'lstm' or 'gru', got {kind!r}")


# --------------------------------------------------------------------------- model-level helpers


def bayesian_config(config: BRITSConfig) -> BayesianConfig:
    """The posterior and prior settings named in a model config (``prior_sigma``, ``rho_init``)."""
    return BayesianConfig(prior_sigma=config.prior_sigma, rho_init=config.rho_init)


def posterior_lr_scale(config: BRITSConfig) -> float:
    """``config.posterior_lr_scale``, or ``unfreeze_every`` when None (see the config field)."""
    if config.posterior_lr_scale is not None:
        return float(config.posterior_lr_scale)
    return float(config.unfreeze_every or 1)


def optimizer_parameter_groups(model: nn.Module, config: BRITSConfig) -> list[dict[str, Any]]:
    """Adam parameter groups: every parameter at ``config.lr`` and ``weight_decay``, except the
    posterior spreads ``rho`` at ``lr * posterior_lr_scale(config)`` without weight decay (the KL
    term is their regulariser). One group when the model has no Bayesian weights."""
    spreads = {id(w.rho) for w in gaussian_weights(model)}
    rest = [p for p in model.parameters() if id(p) not in spreads]
    groups: list[dict[str, Any]] = [{"params": rest, "lr": config.lr, "weight_decay": config.weight_decay}]
    if spreads:
        groups.append({"params": [w.rho for w in gaussian_weights(model)],
                       "lr": config.lr * posterior_lr_scale(config), "weight_decay": 0.0})
    return groups


def posterior_spread_summary(model: nn.Module) -> dict[str, float]:
    """Mean, min and max posterior std ``softplus(rho)`` over all Bayesian weights (empty if none):
    what to watch to see whether the posterior learns."""
    weights = gaussian_weights(model)
    if not weights:
        return {}
    sigma = torch.cat([w.sigma.detach().flatten() for w in weights])
    return {"posterior_std_mean": float(sigma.mean()), "posterior_std_min": float(sigma.min()),
            "posterior_std_max": float(sigma.max())}


def gaussian_weights(model: nn.Module) -> list[GaussianWeight]:
    """Every :class:`GaussianWeight` inside ``model``."""
    return [m for m in model.modules() if isinstance(m, GaussianWeight)]


def is_bayesian(model: nn.Module) -> bool:
    return any(isinstance(m, GaussianWeight) for m in model.modules())


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """Sum of ``KL(q || prior)`` over all Bayesian weights of ``model`` (0 if none)."""
    weights = gaussian_weights(model)
    if not weights:
        return torch.zeros(())
    return torch.stack([w.kl() for w in weights]).sum()


@contextmanager
def sampled_weights(model: nn.Module, n_samples: int, generator: torch.Generator | None = None) -> Iterator[int]:
    """Draw ``n_samples`` weight samples for every Bayesian weight of ``model`` once, for the
    duration of the block (one draw per batch pass); the model is frozen again afterwards.

    Inside, feed the model a batch repeated ``n_samples`` times (:func:`repeat_for_samples`).
    Yields ``n_samples``.
    """
    weights = gaussian_weights(model)
    try:
        for w in weights:
            w.draw(n_samples, generator)
        yield n_samples
    finally:
        for w in weights:
            w.clear()


def repeat_for_samples(x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """``[B, ...] -> [K*B, ...]``, sample-major: rows ``k*B .. (k+1)*B - 1`` are copy ``k``."""
    return x.repeat(n_samples, *([1] * (x.dim() - 1)))


def split_samples(x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """``[K*B, ...] -> [K, B, ...]``: inverse of :func:`repeat_for_samples`'s row order."""
    if x.shape[0] % n_samples:
        raise ValueError(f"{x.shape[0]} rows cannot be split into {n_samples} samples")
    return x.reshape(n_samples, x.shape[0] // n_samples, *x.shape[1:])


@torch.no_grad()
def load_deterministic_state(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a deterministic model's ``state_dict`` into its Bayesian twin: every Bayesian weight
    ``name.mu`` takes the deterministic ``name``, every ``name.rho`` keeps its value, all other
    entries are copied as they are. Frozen, the twin then computes exactly what the deterministic
    model computes (a warm start for Bayesian training, and the test of the wiring)."""
    own = model.state_dict()
    merged = {}
    for key, value in own.items():
        if key.endswith(".mu") and key[: -len(".mu")] in state_dict:
            merged[key] = state_dict[key[: -len(".mu")]]
        elif key.endswith(".rho") and key not in state_dict:
            merged[key] = value
        elif key in state_dict:
            merged[key] = state_dict[key]
        else:
            raise KeyError(f"deterministic state has no entry for {key!r}")
    unused = set(state_dict) - {k[: -len(".mu")] if k.endswith(".mu") else k for k in merged}
    if unused:
        raise KeyError(f"deterministic state entries without a Bayesian counterpart: {sorted(unused)[:5]}")
    model.load_state_dict(merged)
