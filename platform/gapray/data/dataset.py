"""The one in-memory container for every gapray dataset (DESIGN.md section 2).

A :class:`TimeSeriesDataset` holds ``X`` as float32 ``[N, T, D]`` with NaN where a value is
missing. Masks and deltas are *derived* on demand, never stored twice. After an evaluation
protocol has removed observed values (see :mod:`gapray.data.masking`), ``X_ori`` keeps the
values before removal; the entries observed in ``X_ori`` but missing in ``X`` are the ground
truth that imputation is scored on (:attr:`TimeSeriesDataset.indicating_mask`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DeltaConvention = Literal["paper", "brits"]
Direction = Literal["forward", "backward"]


class DatasetError(ValueError):
    """Raised when data handed to gapray is malformed; the message names what and where."""


def _optional_array(value: object, name: str, dtype: type | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` as an array of ``dtype`` (kept as is when None) and exactly ``shape``."""
    if value is None:
        return None
    array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    if array.shape != shape:
        raise DatasetError(f"{name} has shape {array.shape}, expected {shape}")
    return array


@dataclass(frozen=True, eq=False)
class TimeSeriesDataset:
    """Incomplete multivariate time series with optional labels.

    Attributes:
        X: float32 ``[N, T, D]``; NaN marks a missing value.
        y: optional labels ``[N]`` (int64 for classification).
        times: optional time stamps ``[N, T]`` (e.g. hours since admission); unit steps if absent.
        lengths: optional valid lengths ``[N]`` for variable-length series (steps past the
            length are padding and must be NaN).
        feature_names: one name per feature ``D``.
        record_ids: optional identifiers ``[N]`` (e.g. PhysioNet RecordID).
        X_ori: optional values before artificial masking (same shape as ``X``).
        name: a short dataset name used in logs.
        extra: loader-specific additions; arrays whose first axis has length N are per-sample
            and are indexed by :meth:`subset`, everything else is shared.
    """

    X: np.ndarray
    y: np.ndarray | None = None
    times: np.ndarray | None = None
    lengths: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    record_ids: np.ndarray | None = None
    X_ori: np.ndarray | None = None
    name: str = "dataset"
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if X.ndim != 3:
            raise DatasetError(f"{self.name}: X must have shape [N, T, D], got {X.ndim} dimensions {X.shape}")
        X = X.astype(np.float32, copy=False)
        if np.isinf(X).any():
            n, t, d = np.argwhere(np.isinf(X))[0]
            raise DatasetError(f"{self.name}: X has an infinite value at sample {n}, step {t}, feature {d}")
        object.__setattr__(self, "X", X)
        n_samples, n_steps, n_features = X.shape
        y = None if self.y is None else np.asarray(self.y)
        label_dtype = np.int64 if y is not None and np.issubdtype(y.dtype, np.integer) else np.float32
        object.__setattr__(self, "y", _optional_array(y, "y", label_dtype, (n_samples,)))
        object.__setattr__(self, "times", _optional_array(self.times, "times", np.float32, (n_samples, n_steps)))
        object.__setattr__(self, "lengths", _optional_array(self.lengths, "lengths", np.int64, (n_samples,)))
        object.__setattr__(self, "X_ori", _optional_array(self.X_ori, "X_ori", np.float32, X.shape))
        object.__setattr__(self, "record_ids", _optional_array(self.record_ids, "record_ids", None, (n_samples,)))
        names = tuple(self.feature_names) or tuple(f"f{i}" for i in range(n_features))
        if len(names) != n_features:
            raise DatasetError(f"{self.name}: {len(names)} feature names for {n_features} features")
        object.__setattr__(self, "feature_names", names)

    # --- shape -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[2])

    # --- derived quantities ------------------------------------------------------------------
    @property
    def mask(self) -> np.ndarray:
        """Observation mask ``m`` (DEARI Sec. 3): 1.0 where ``X`` is observed, else 0.0."""
        return (~np.isnan(self.X)).astype(np.float32)

    @property
    def indicating_mask(self) -> np.ndarray:
        """1.0 on the artificially removed entries (observed in ``X_ori``, missing in ``X``)."""
        if self.X_ori is None:
            return np.zeros_like(self.X)
        return (np.isnan(self.X) & ~np.isnan(self.X_ori)).astype(np.float32)

    @property
    def missing_rate(self) -> float:
        """Fraction of missing entries in ``X`` (padding of variable-length series included)."""
        return float(np.isnan(self.X).mean())

    def deltas(self, convention: DeltaConvention = "paper", direction: Direction = "forward") -> np.ndarray:
        """Time gaps since each feature's last observation, ``[N, T, D]`` (see :func:`compute_deltas`)."""
        return compute_deltas(self.mask, self.times, convention=convention, direction=direction)

    # --- transformations ---------------------------------------------------------------------
    def subset(self, index: Sequence[int] | np.ndarray) -> TimeSeriesDataset:
        """The samples at ``index`` (a new dataset; arrays are copied by fancy indexing)."""
        index = np.asarray(index)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return dataclasses.replace(
            self, X=self.X[index], y=take(self.y), times=take(self.times), lengths=take(self.lengths),
            record_ids=take(self.record_ids), X_ori=take(self.X_ori),
            extra={key: self._take_extra(value, index) for key, value in self.extra.items()},
        )

    def _take_extra(self, value: object, index: np.ndarray) -> object:
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == len(self):
            return value[index]
        return value

    def replace(self, **changes: object) -> TimeSeriesDataset:
        """A copy with the given fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """Shape, missing rate and label balance, as printed by ``gapray data describe``."""
        summary: dict[str, object] = {
            "name": self.name,
            "n_samples": len(self),
            "n_steps": self.n_steps,
            "n_features": self.n_features,
            "missing_rate": round(self.missing_rate, 6),
        }
        if self.y is not None and np.issubdtype(self.y.dtype, np.integer):
            values, counts = np.unique(self.y, return_counts=True)
            summary["labels"] = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
        if self.lengths is not None:
            summary["length_min"] = int(self.lengths.min())
            summary["length_max"] = int(self.lengths.max())
        return summary


def compute_deltas(
    mask: np.ndarray,
    times: np.ndarray | None = None,
    convention: DeltaConvention = "paper",
    direction: Direction = "forward",
) -> np.ndarray:
    """Per-feature time since the last observation, ``[N, T, D]`` float32.

    ``convention="paper"`` (DEARI Sec. 3, Fig. 1; BRITS Cao et al. 2018 Sec. 3):
    ``delta_1 = 0`` and ``delta_t = (s_t - s_{t-1}) + (1 - m_{t-1}) * delta_{t-1}``. The
    printed equation in DEARI conditions on ``m_t``, but its own Figure 1 example
    (``s = 0, 4, 5, 7, 9``, feature 2 observed at t1 and t5 only, ``delta_5^2 = 9``) and BRITS
    condition on the previous step's mask; we follow the example.

    ``convention="brits"`` (reference code, ``caow13/BRITS/input_process.py`` and the CSAI/DEARI
    code): ``delta_1 = 1`` and ``delta_t = (s_t - s_{t-1}) + (1 - m_t) * delta_{t-1}`` with
    unit gaps when ``times`` is None (exactly the reference ``1 + (1 - m_t) * delta_{t-1}``).

    ``direction="backward"`` computes the same quantity on the time-reversed series and
    returns it in reversed order (index 0 = the last time step), as the backward RITS sees it.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 3:
        raise DatasetError(f"mask must have shape [N, T, D], got {mask.shape}")
    n_samples, n_steps, n_features = mask.shape
    if times is None:
        stamps = np.broadcast_to(np.arange(n_steps, dtype=np.float32), (n_samples, n_steps))
    else:
        stamps = np.asarray(times, dtype=np.float32)
        if stamps.shape != (n_samples, n_steps):
            raise DatasetError(f"times has shape {stamps.shape}, expected {(n_samples, n_steps)}")
    if direction == "backward":
        mask = mask[:, ::-1]
        stamps = stamps[:, ::-1]
    elif direction != "forward":
        raise DatasetError(f"direction must be 'forward' or 'backward', got {direction!r}")
    gaps = np.abs(np.diff(stamps, axis=1))[:, :, None]  # [N, T-1, 1]
    deltas = np.empty((n_samples, n_steps, n_features), dtype=np.float32)
    if convention == "paper":
        deltas[:, 0] = 0.0
        for t in range(1, n_steps):
            deltas[:, t] = gaps[:, t - 1] + (1.0 - mask[:, t - 1]) * deltas[:, t - 1]
    elif convention == "brits":
        deltas[:, 0] = 1.0
        for t in range(1, n_steps):
            deltas[:, t] = gaps[:, t - 1] + (1.0 - mask[:, t]) * deltas[:, t - 1]
    else:
        raise DatasetError(f"convention must be 'paper' or 'brits', got {convention!r}")
    return deltas
