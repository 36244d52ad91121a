"""The best model of a sweep as an MLflow pyfunc model, registered with the alias ``champion``.

MLflow 3: ``log_model(name=...)`` (not ``artifact_path``), registry aliases (not stages).
The pyfunc wrapper loads any gapray imputer that offers ``Class.load(path)`` and
``predict(dataset) -> {"imputation": ...}``; its input is an array ``[N, T, D]`` with NaN for
missing values (or a dict with ``"X"``), its output the imputed array (plus ``std``/``lower``/
``upper`` when the model is Bayesian and ``params={"uncertainty": True}`` is passed).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient

CHAMPION_ALIAS = "champion"


def _import_object(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


# MLflow warns when the class is created that predict has no (list-shaped) type hints; the
# input is a plain [N, T, D] array, so the warning is silenced here and nowhere else.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class ImputerPyfunc(PythonModel):  # type: ignore[misc]
        """pyfunc wrapper around a saved gapray imputer (``model_config["model_class"]``'s ``load(path)``)."""

        def __init__(self) -> None:
            self._model: Any = None

        def load_context(self, context: Any) -> None:
            model_class = (context.model_config or {}).get("model_class", "gapray.imputation:DEARI")
            self._model = _import_object(model_class).load(context.artifacts["model"])

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # MLflow reads hints
            from gapray.data import TimeSeriesDataset

            X = model_input["X"] if isinstance(model_input, dict) else model_input
            X = np.asarray(X, dtype=np.float32)
            result = self._model.predict(TimeSeriesDataset(X=X, name="pyfunc-input"))
            if params and params.get("uncertainty"):
                return {k: np.asarray(v) for k, v in result.items() if v is not None}
            return np.asarray(result["imputation"])


@dataclass(frozen=True)
class RegisteredModel:
    """Where the champion went: registry name, version, alias and the model URI to load."""

    name: str
    version: str
    alias: str
    model_uri: str


@contextlib.contextmanager
def _fluent_uris(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (and the env vars it sets for child processes) at ``uri``, then restore."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]  # None unsets it
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_and_register_model(
    tracking_uri: str,
    run_id: str,
    model_path: str | Path,
    registered_name: str,
    model_class: str = "gapray.imputation:DEARI",
    alias: str = CHAMPION_ALIAS,
    name: str = "model",
) -> RegisteredModel:
    """Log ``model_path`` under run ``run_id`` with ``log_model(name=name)``, register it, set ``alias``.

    Requirements are given explicitly (``gapray``) so MLflow does not spend a subprocess
    inferring them.
    """
    with _fluent_uris(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),  # models from code: no pickle
            artifacts={"model": str(model_path)},
            model_config={"model_class": model_class},
            pip_requirements=["gapray"],
            registered_model_name=registered_name,
        )
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(registered_name, alias, version)
    return RegisteredModel(registered_name, version, alias, f"models:/{registered_name}@{alias}")
