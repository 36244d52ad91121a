"""GIL's final predictor as an MLflow pyfunc model, and the comparison plot of a GIL run.

The predictor file (``torch.save``) holds its ``state_dict`` and a :class:`PredictorSpec`: what
:func:`gapray.gil.predictors.build_predictor` needs to rebuild it, and the placeholder that
replaces missing inputs (GIL Appendix D). The pyfunc model (:class:`GILPredictorPyfunc`, loaded
"from code" through ``gil_pyfunc_model.py``) takes the raw inputs with NaN for missing values,
``[N, d]`` (MLP) or ``[N, T, d]`` (LSTM, full length), and returns class probabilities ``[N, C]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.pyfunc import PythonModel

METHODS = ("GIL", "ones", "mask")
"""The methods a GIL run compares: the learned importance, zero imputation (``a = 1``) and GIL-H (``a = m``)."""
SCORES = ("accuracy", "auc", "ap")


@dataclass(frozen=True)
class PredictorSpec:
    """How to rebuild a trained GIL predictor and feed it raw inputs."""

    kind: str
    """``mlp`` or ``lstm``."""
    n_features: int
    """Input features ``d``."""
    n_classes: int
    """Classes ``C``."""
    hidden_sizes: tuple[int, ...]
    """MLP hidden widths."""
    lstm_hidden_size: int
    """LSTM hidden units."""
    mlp_batch_norm: bool
    """MLP BatchNorm layers."""
    mlp_init: str
    """MLP initialisation (only matters for building; the weights are loaded)."""
    placeholder: float
    """Value that replaces a missing input before the forward pass."""

    def build(self) -> torch.nn.Module:
        from gapray.gil.predictors import build_predictor

        return build_predictor(self.kind, self.n_features, self.n_classes, tuple(self.hidden_sizes),
                               self.lstm_hidden_size, mlp_batch_norm=self.mlp_batch_norm, mlp_init=self.mlp_init)


def save_predictor(path: str | Path, state_dict: Mapping[str, Any], spec: PredictorSpec,
                   settings: Mapping[str, Any] | None = None) -> Path:
    """Write the predictor file read by :class:`GILPredictorPyfunc`."""
    path = Path(path)
    torch.save({"state_dict": dict(state_dict), "spec": dataclasses.asdict(spec), "settings": dict(settings or {})},
               path)
    return path


def load_predictor(path: str | Path) -> tuple[torch.nn.Module, PredictorSpec]:
    """The predictor (eval mode, CPU) and its spec from a file written by :func:`save_predictor`."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    values = dict(payload["spec"])
    values["hidden_sizes"] = tuple(values["hidden_sizes"])
    spec = PredictorSpec(**values)
    predictor = spec.build()
    predictor.load_state_dict(payload["state_dict"])
    predictor.eval()
    return predictor, spec


def predict_proba(predictor: torch.nn.Module, spec: PredictorSpec, X: np.ndarray) -> np.ndarray:
    """Class probabilities ``[N, C]`` for raw inputs ``X`` with NaN for missing values."""
    X = np.asarray(X, dtype=np.float32)
    expected = 2 if spec.kind == "mlp" else 3
    if X.ndim != expected or X.shape[-1] != spec.n_features:
        layout = "[N, d]" if spec.kind == "mlp" else "[N, T, d]"
        raise ValueError(f"the {spec.kind.upper()} predictor takes {layout} with d = {spec.n_features}, "
                         f"got an array of shape {X.shape}")
    filled = np.where(np.isnan(X), np.float32(spec.placeholder), X)
    with torch.no_grad():
        logits = predictor(torch.as_tensor(filled)).logits
    return torch.softmax(logits, dim=-1).numpy()


class GILPredictorPyfunc(PythonModel):  # type: ignore[misc]
    """pyfunc wrapper of a saved GIL predictor (artifact ``predictor``): raw inputs in, probabilities out."""

    def __init__(self) -> None:
        self._predictor: torch.nn.Module | None = None
        self._spec: PredictorSpec | None = None

    def load_context(self, context: Any) -> None:
        self._predictor, self._spec = load_predictor(context.artifacts["predictor"])

    # A numpy type hint: MLflow validates against the logged signature and does not warn.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        assert self._predictor is not None and self._spec is not None  # set by load_context
        return predict_proba(self._predictor, self._spec, model_input)


def log_and_register_predictor(tracking_uri: str, run_id: str, predictor_file: str | Path, registered_name: str,
                               input_example: np.ndarray, description: str, tags: Mapping[str, Any],
                               params: Mapping[str, Any], metrics: Mapping[str, float]) -> Any:
    """Log the predictor under its trial's run ``run_id`` (signature from ``input_example``), register it
    with the alias ``champion``; returns :class:`gapray.tracking.registry.RegisteredModel`."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from gapray.tracking.registry import CHAMPION_ALIAS, RegisteredModel, _fluent_uris

    predictor, spec = load_predictor(predictor_file)
    example = np.asarray(input_example, dtype=np.float32)
    signature = infer_signature(example, predict_proba(predictor, spec, example))
    text_tags = {k: str(v) for k, v in tags.items()}
    with _fluent_uris(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="predictor", python_model=str(Path(__file__).with_name("gil_pyfunc_model.py")),
            artifacts={"predictor": str(predictor_file)}, pip_requirements=["gapray"],
            registered_model_name=registered_name, signature=signature, input_example=example,
            params={k: str(v) for k, v in params.items()} or None, tags=text_tags or None)
        if metrics:
            mlflow.log_metrics(dict(metrics), model_id=info.model_id)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(registered_name, CHAMPION_ALIAS, version)
    client.update_model_version(registered_name, version, description=description)
    for key, value in text_tags.items():
        client.set_model_version_tag(registered_name, version, key, value)
    return RegisteredModel(registered_name, version, CHAMPION_ALIAS, f"models:/{registered_name}@{CHAMPION_ALIAS}")


def comparison_summary(per_seed: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation over seeds of each method's test scores:
    ``{"GIL": {"accuracy": m, "accuracy_std": s, ...}, ...}`` (std 0 for one seed)."""
    out: dict[str, dict[str, float]] = {}
    for method in METHODS:
        values = {score: np.array([row[method][score] for row in per_seed], dtype=np.float64) for score in SCORES}
        out[method] = {}
        for score, column in values.items():
            out[method][score] = float(column.mean())
            out[method][f"{score}_std"] = float(column.std(ddof=1)) if len(column) > 1 else 0.0
    return out


def plot_comparison(per_seed: Sequence[Mapping[str, Mapping[str, float]]], path: str | Path, title: str) -> Path:
    """One figure: test accuracy, AUC and AP of GIL, ``ones`` and ``mask`` side by side; bars are means over
    seeds with a standard-deviation whisker when there are several, dots are the seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = comparison_summary(per_seed)
    figure = Figure(figsize=(10, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    positions = np.arange(len(METHODS))
    for index, score in enumerate(SCORES, start=1):
        axes = figure.add_subplot(1, len(SCORES), index)
        means = [summary[m][score] for m in METHODS]
        errors = [summary[m][f"{score}_std"] for m in METHODS] if len(per_seed) > 1 else None
        axes.bar(positions, means, yerr=errors, capsize=4, color=["tab:blue", "tab:grey", "tab:orange"], alpha=0.8)
        for position, method in zip(positions, METHODS):
            points = [row[method][score] for row in per_seed]
            axes.scatter(np.full(len(points), position), points, color="black", s=10, zorder=3)
        shown = [row[m][score] for row in per_seed for m in METHODS] + [
            mean + (error or 0.0) for mean, error in zip(means, errors or [0.0] * len(means))]
        pad = max(0.02, 0.1 * (max(shown) - min(shown)))  # zoomed in: the methods differ by little
        axes.set_ylim(max(0.0, min(shown) - pad), min(1.0, max(shown) + pad))
        axes.set_xticks(positions, list(METHODS))
        axes.set_title(f"test {score.upper() if score != 'accuracy' else score}")
        axes.grid(axis="y", alpha=0.3)
    seeds = f"{len(per_seed)} seeds, mean ± std" if len(per_seed) > 1 else "1 seed"
    figure.suptitle(f"{title} ({seeds}; ones = zero imputation, mask = GIL-H)")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)
