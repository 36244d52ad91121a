"""Frozen configurations of BRITS and DEARI (defaults from the DEARI paper and its reference code).

One dataclass feeds the Python API, the ``gapray impute`` CLI and the Tune search space.
:class:`BRITSConfig` holds everything a single bidirectional layer needs (training, deep metric
learning, Bayesian fields); :class:`DEARIConfig` adds depth and the attention initialisation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

CellKind = Literal["lstm", "gru"]
Pooling = Literal["cls", "last", "mean"]
DeltaConvention = Literal["paper", "brits"]
ReconstructionTerms = Literal["all", "combined"]
ParameterInit = Literal["pytorch", "reference"]


@dataclass(frozen=True)
class BRITSConfig:
    """BRITS (Cao et al. 2018; DEARI Sec. 3.1) and the shared training settings."""

    hidden_size: int = 108
    """RNN hidden units (DEARI Sec. 5.2: 108 for all models)."""
    cell: CellKind = "lstm"
    """Recurrent cell of Eq. 10: ``lstm`` (original BRITS) or ``gru`` (DEARI's "BRITS GRU")."""
    combination_sigmoid: bool = True
    """Apply the sigmoid of Eq. 7 (paper); False reproduces the DEARI reference port (no sigmoid)."""
    imputation_weight: float = 0.3
    """Weight of the masked reconstruction loss (reference CSAI/DEARI code: 0.3)."""
    reconstruction_terms: ReconstructionTerms = "all"
    """Estimates in the reconstruction loss: ``all`` = history, feature and combined estimates
    (Eqs. 3, 5, 8; original BRITS code and ours), ``combined`` = the combined estimate only (the
    DEARI port's ``component_error=False`` default and the CSAI code; docs/deari_reference_audit.md)."""
    consistency_weight: float = 0.1
    """Weight of the forward/backward consistency loss (BRITS: 0.1)."""
    dml: bool = False
    """Add the deep self-supervised metric learning loss (DEARI Sec. 4.2)."""
    dml_margin: float = 0.1
    """Mining margin: ``epsilon`` of ``MultiSimilarityMiner`` (the "DML margin" of Eq. 20)."""
    dml_weight: float = 0.1
    """Weight of the Multi-Similarity loss added to the imputation loss (the paper gives none)."""
    dml_pooling: Pooling = "mean"
    """``f_r`` of Eq. 19: ``cls`` token, ``last`` token or ``mean`` pooling (paper: mean for BRITS)."""
    dml_alpha: float = 2.0
    """Multi-Similarity ``alpha`` (Eq. 21, positive-pair scale; library default)."""
    dml_beta: float = 50.0
    """Multi-Similarity ``beta`` (Eq. 21, negative-pair scale; library default)."""
    dml_base: float = 0.5
    """Multi-Similarity similarity offset (``epsilon`` inside Eq. 21's exponentials; library default)."""
    dml_attention_layers: int = 1
    """Encoder layers of the self-attention ``f_SA`` applied before pooling (Eq. 19)."""
    dml_attention_heads: int = 4
    """Heads of ``f_SA``; must divide ``hidden_size``."""
    attention_feedforward: int = 2048
    """Feed-forward width of every transformer encoder layer (PyTorch's default 2048 gives the
    paper's 492,044 parameters per layer at hidden 108); smaller values make small tests fast."""
    fast_attention: bool = False
    """Fast path for the transformer encoders (attention initial state, DML ``f_SA``): bfloat16
    autocast and 16-bit dropout masks (:mod:`gapray.imputation.attention`); the recurrent network,
    losses and master weights stay fp32. Off by default: the paper-faithful fp32 path (speed and
    accuracy in ``benchmarks/results/deari_speed.md``)."""
    compile_recurrence: bool = False
    """``torch.compile`` (inductor) the recurrent layers for training steps; inference stays eager.
    The same equations with fused kernels: outputs and gradients agree with eager to float rounding.
    It pays with several CPU threads and the fast encoders (DEARI-3, PhysioNet, 2 threads: a
    training step 23 % shorter; with fp32 encoders 2 %) after about a minute of compiling per run;
    on one thread it gains little (``benchmarks/results/deari_speed.md``). On a CPU it needs a C++
    compiler (inductor). Off by default."""
    parameter_init: ParameterInit = "pytorch"
    """Initial weights: ``pytorch`` every module's default (ours), ``reference`` the DEARI/CSAI
    code's re-draw of every parameter with >= 2 dimensions from U(+-1/sqrt(size(1)))
    (:func:`gapray.imputation.initialisation.reference_initialisation`;
    docs/deari_reference_audit.md #6)."""
    lr: float = 5e-4
    """Adam learning rate (reference: 5e-4)."""
    weight_decay: float = 1e-5
    """Adam weight decay (reference: 1e-5)."""
    batch_size: int = 64
    """Mini-batch size (DEARI Sec. 5.2: 64 for PhysioNet and traffic, 128 otherwise)."""
    epochs: int = 300
    """Maximum training epochs (reference: 300)."""
    patience: int = 10
    """Early stopping: epochs without a better validation MAE before stopping (reference: 10)."""
    seed: int = 0
    """Seed of parameter initialisation, shuffling and dropout."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    delta_convention: DeltaConvention = "brits"
    """Time-gap definition: ``brits`` (reference code, ``delta_1 = 1``) or ``paper`` (DEARI Sec. 3)."""
    max_seconds: float | None = None
    """Stop training after this wall-clock budget (None: no limit); the best weights are kept."""
    bayesian: bool = False
    """Bayesian recurrent cell (DEARI Sec. 4.3, Eqs. 22-25)."""
    unfreeze_every: int | None = None
    """Bayesian layers: sample weights on every this many training steps (paper: 100); None = always."""
    n_samples: int = 10
    """Bayesian layers: Monte Carlo passes when unfrozen and at inference (paper: 10)."""
    kl_weight: float = 1.0
    """Bayesian layers: weight of KL(q || prior) in the loss (Eq. 26), on top of the minibatch
    weighting and the division by the number of observed training entries (see
    ``gapray.imputation.schedule.FreezeSchedule.kl_coefficient``)."""
    prior_sigma: float = 0.1
    """Bayesian layers: standard deviation of the Gaussian prior N(0, sigma^2) (reference: 0.1)."""
    rho_init: float = -6.0
    """Bayesian layers: initial ``rho`` of every posterior, std ``softplus(rho)`` (reference, blitz's
    ``posterior_rho_init``: -6, std 0.0025)."""
    posterior_lr_scale: float | None = None
    """Bayesian layers: Adam learning rate of the ``rho`` parameters = ``lr`` x this (no weight
    decay). ``rho`` has a gradient only on sampling steps, one in ``unfreeze_every``, and Adam
    moves a parameter by at most about ``lr`` per update, so with one learning rate (reference:
    1) ``rho`` moves by at most ``lr`` x (steps / unfreeze_every): 0.075 in the paper's 300
    epochs of PhysioNet. None: ``unfreeze_every``, the same displacement budget per epoch as the
    means."""
    kl_scheme: Literal["uniform", "blundell"] = "uniform"
    """Bayesian layers: share of the KL per minibatch (Blundell et al. 2015, sec. 3.4): ``uniform``
    1/M or ``blundell`` 2^(M-i)/(2^M-1); the reference port's fixed 1/(2^N-1) is a bug."""
    masking_samples: int = 10
    """Bayesian layers: aleatoric Monte Carlo passes at inference, each with its own random removal
    of ``masking_rate`` of the observed inputs (DEARI sec. 4.3: aleatoric uncertainty "captured by
    the random masking approach"; the paper gives no count: 10 like its weight samples); 0: the
    std is the weight samples' spread only (``gapray.imputation.predictive``)."""
    masking_rate: float = 0.1
    """Bayesian layers: share of each record's observed inputs removed in an aleatoric pass (the
    protocol's removal rate: 10 % in DEARI Table 1's headline columns)."""
    aleatoric: Literal["laplace", "masking", "none"] = "laplace"
    """Bayesian layers: the aleatoric part of the predictive std (``gapray.imputation.predictive``):
    ``laplace`` the Laplace scale of the MAE likelihood (Eq. 26's data term), fitted after
    training on the training records' randomly masked entries from the variable, the gap length
    and the masking spread (``gapray.imputation.aleatoric``); ``masking`` the spread of the
    masked passes itself; ``none`` the weight spread only (reference port). Decision: the paper
    attributes the aleatoric part to random masking without a formula."""
    aleatoric_level: bool = True
    """Bayesian layers, ``aleatoric="laplace"``: the Laplace scale also depends on the imputed value
    (a z-score; one common and one per-variable slope of its magnitude), for noise that grows with
    the level (decision; ``gapray.imputation.aleatoric``)."""
    point_estimate: Literal["posterior_mean", "mc_mean"] = "posterior_mean"
    """Bayesian layers: the imputation :meth:`predict` returns: ``posterior_mean`` one pass with
    every weight at its posterior mean ``mu`` (the network the freeze schedule trains on most
    steps and early stopping selects), ``mc_mean`` the mean of the ``n_samples`` weight samples
    (DEARI sec. 4.3's model average). The std and the intervals come from the samples either way.
    Decision, measured (``benchmarks/results/bayesian_samples_physionet2012_full_bayes.md``):
    after 219 PhysioNet epochs the posterior std has grown to 0.077 (mean; from 0.0025) and the
    Monte Carlo mean is 0.013 worse than the posterior mean, for any number of samples (0.2749
    with 100, 0.2618 for ``mu``); inference-only, so a run may resume with either."""
    calibration_groups: Literal["gap", "none"] = "gap"
    """Bayesian layers: split-conformal calibration of the intervals on validation during ``fit``:
    ``gap`` one multiplier per gap-length bucket (Mondrian; ``uncertainty.GAP_EDGES``), so that
    coverage holds in long gaps too, or ``none`` one global multiplier (decision; the paper has
    no calibration)."""

    def __post_init__(self) -> None:
        problems = []
        if self.hidden_size < 1:
            problems.append(f"hidden_size must be >= 1, got {self.hidden_size}")
        if self.cell not in ("lstm", "gru"):
            problems.append(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
        if self.dml_pooling not in ("cls", "last", "mean"):
            problems.append(f"dml_pooling must be 'cls', 'last' or 'mean', got {self.dml_pooling!r}")
        if self.dml and self.hidden_size % self.dml_attention_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by dml_attention_heads "
                            f"{self.dml_attention_heads}")
        if self.batch_size < 1 or self.epochs < 0 or self.patience < 1:
            problems.append(f"batch_size >= 1, epochs >= 0, patience >= 1 required, got {self.batch_size}, "
                            f"{self.epochs}, {self.patience}")
        if self.reconstruction_terms not in ("all", "combined"):
            problems.append(f"reconstruction_terms must be 'all' or 'combined', got {self.reconstruction_terms!r}")
        if self.parameter_init not in ("pytorch", "reference"):
            problems.append(f"parameter_init must be 'pytorch' or 'reference', got {self.parameter_init!r}")
        if self.delta_convention not in ("brits", "paper"):
            problems.append(f"delta_convention must be 'brits' or 'paper', got {self.delta_convention!r}")
        if self.unfreeze_every is not None and self.unfreeze_every < 1:
            problems.append(f"unfreeze_every must be None or >= 1, got {self.unfreeze_every}")
        if self.n_samples < 1:
            problems.append(f"n_samples must be >= 1, got {self.n_samples}")
        if self.posterior_lr_scale is not None and not self.posterior_lr_scale > 0:
            problems.append(f"posterior_lr_scale must be None or > 0, got {self.posterior_lr_scale}")
        if self.point_estimate not in ("posterior_mean", "mc_mean"):
            problems.append(f"point_estimate must be 'posterior_mean' or 'mc_mean', got {self.point_estimate!r}")
        if self.kl_scheme not in ("uniform", "blundell"):
            problems.append(f"kl_scheme must be 'uniform' or 'blundell', got {self.kl_scheme!r}")
        if self.masking_samples < 0 or self.masking_samples == 1:
            problems.append(f"masking_samples must be 0 or >= 2, got {self.masking_samples}")
        if not 0.0 < self.masking_rate < 1.0:
            problems.append(f"masking_rate must lie in (0, 1), got {self.masking_rate}")
        if self.aleatoric not in ("laplace", "masking", "none"):
            problems.append(f"aleatoric must be 'laplace', 'masking' or 'none', got {self.aleatoric!r}")
        if self.aleatoric == "masking" and self.masking_samples == 0:
            problems.append("aleatoric='masking' needs masking_samples >= 2")
        if self.calibration_groups not in ("gap", "none"):
            problems.append(f"calibration_groups must be 'gap' or 'none', got {self.calibration_groups!r}")
        problems.extend(self._extra_problems())
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))

    def _extra_problems(self) -> list[str]:
        return []

    def replace(self, **changes: Any) -> BRITSConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BRITSConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class DEARIConfig(BRITSConfig):
    """DEARI (DEARI Sec. 4.1): ``n_layers`` bidirectional RITS layers with attention initialisation."""

    n_layers: int = 3
    """Number of bidirectional RITS layers (paper tables: 3; ablation up to 10). 1 is BRITS."""
    attention_init: Pooling = "cls"
    """How layer ``l > 1`` gets ``h_0`` from layer ``l-1``'s hidden states (Eqs. 14-18):
    ``cls`` token, ``last`` or ``mean`` of the encoded sequence."""
    attention_layers: int = 2
    """Transformer encoder layers per direction and per layer transition (paper: 2)."""
    attention_heads: int = 4
    """Attention heads (paper: 4); must divide ``hidden_size``."""
    dml_pooling: Pooling = "cls"
    """``f_r`` of Eq. 19 (paper: CLS token for DEARI DML)."""

    def _extra_problems(self) -> list[str]:
        problems = []
        if not 1 <= self.n_layers <= 64:
            problems.append(f"n_layers must be in [1, 64], got {self.n_layers}")
        if self.attention_init not in ("cls", "last", "mean"):
            problems.append(f"attention_init must be 'cls', 'last' or 'mean', got {self.attention_init!r}")
        if self.n_layers > 1 and self.hidden_size % self.attention_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by attention_heads "
                            f"{self.attention_heads}")
        if self.attention_layers < 1:
            problems.append(f"attention_layers must be >= 1, got {self.attention_layers}")
        return problems
