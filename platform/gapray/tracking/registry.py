"""A fitted imputer as an MLflow pyfunc model (a sweep's best, or `gapray fit`'s), registered with an alias.

MLflow 3: ``log_model(name=...)`` (not ``artifact_path``), registry aliases (not stages).
The pyfunc wrapper loads any gapray imputer that offers ``Class.load(path)`` and
``predict(dataset) -> {"imputation": ...}``, with the model's signature
(:mod:`gapray.tracking.model_schema`).

- A model fitted on a table (``model.preprocessing.table``) takes that table, long or wide, in
  original units, and returns it filled, in the same layout, with ``value``, ``imputed``, ``std``,
  ``lower`` and ``upper`` (:func:`gapray.imputation.preprocessing.impute_frame`).
- A model fitted on arrays takes ``[N, T, D]`` with NaN for missing values (or a dict with
  ``"X"``): in original units when it carries its scaler (``model.preprocessing``), else
  z-scores; it returns the imputed array (plus ``std``/``lower``/``upper`` when the model gives
  them and ``params={"uncertainty": True}`` is passed).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient

CHAMPION_ALIAS = "champion"


def _import_object(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


class ImputerPyfunc(PythonModel):  # type: ignore[misc]
    """pyfunc wrapper around a saved gapray imputer (``model_config["model_class"]``'s ``load(path)``)."""

    def __init__(self) -> None:
        self._model: Any = None

    def load_context(self, context: PythonModelContext) -> None:
        model_class = (context.model_config or {}).get("model_class", "gapray.imputation:DEARI")
        self._model = _import_object(model_class).load(context.artifacts["model"])

    @property
    def model(self) -> Any:
        """The loaded gapray imputer."""
        return self._model

    # The type hint is MLflow's: a DataFrame hint turns off its list-type validation (the model
    # parses the table itself) without the "Add type hints" warning.
    def predict(self, context: PythonModelContext | None, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """The table filled (table models), or the imputed array (array models; see the module doc)."""
        params = params or {}
        level = float(params.get("level", 0.9))
        preprocessing = getattr(self._model, "preprocessing", None)
        if isinstance(model_input, pd.DataFrame) and getattr(preprocessing, "table", None) is not None:
            from gapray.imputation.preprocessing import impute_frame

            return impute_frame(self._model, model_input, source="model input", level=level)
        return self._predict_array(model_input, preprocessing is not None, bool(params.get("uncertainty")), level)

    def _predict_array(self, model_input: Any, original_units: bool, uncertainty: bool, level: float) -> Any:
        from gapray.data import DatasetError, TimeSeriesDataset
        from gapray.imputation.preprocessing import predict_in_original_units

        X = model_input["X"] if isinstance(model_input, dict) else model_input
        if isinstance(X, pd.DataFrame):
            raise DatasetError("this model was fitted on arrays, not on a table: send an [N, T, D] array")
        X = np.asarray(X, dtype=np.float32)
        if original_units:
            result = predict_in_original_units(self._model, X, level=level)
        else:
            result = self._model.predict(TimeSeriesDataset(X=X, name="pyfunc-input"), level=level)
        if uncertainty:
            return {k: np.asarray(v) for k, v in result.items() if v is not None}
        return np.asarray(result["imputation"])


def load_logged_imputer(model_uri: str, tracking_uri: str) -> Any:
    """The gapray imputer inside a logged pyfunc model (``models:/NAME@ALIAS``, ``runs:/...``, a folder)."""
    from mlflow.exceptions import MlflowException

    with _fluent_uris(tracking_uri):
        try:
            wrapper = mlflow.pyfunc.load_model(model_uri)
        except (MlflowException, OSError) as error:
            raise ValueError(f"cannot load model {model_uri!r} from {tracking_uri}: {error}") from error
    python_model = wrapper.unwrap_python_model()
    if not isinstance(python_model, ImputerPyfunc):
        raise ValueError(f"{model_uri} is not a gapray imputer (its pyfunc model is {type(python_model).__name__})")
    return python_model.model


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
    registered_name: str | None,
    model_class: str = "gapray.imputation:DEARI",
    alias: str = CHAMPION_ALIAS,
    name: str = "model",
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    input_example: Any = None,
) -> RegisteredModel:
    """Log ``model_path`` under run ``run_id`` with ``log_model(name=name)``, register it, set ``alias``.

    ``run_id`` is the model's source run (a sweep's best trial). ``params`` and ``metrics`` go to the logged
    model (shown on its page), ``tags`` and ``description`` to the model version as well;
    ``input_example`` makes MLflow store an example (default: a synthetic table for table models).
    The signature comes from the model (:func:`gapray.tracking.model_schema.model_signature`).
    Requirements are given explicitly (``gapray``) so MLflow does not spend a subprocess inferring
    them. ``registered_name=None`` logs the model without registering it: the result then has an
    empty name, version and alias, and the logged model's URI.
    """
    from gapray.tracking.model_schema import example_table, model_signature

    model = _import_object(model_class).load(model_path)
    if input_example is None:
        input_example = example_table(model)
    text_tags = {k: str(v) for k, v in (tags or {}).items()}
    with _fluent_uris(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),  # models from code: no pickle
            artifacts={"model": str(model_path)},
            model_config={"model_class": model_class},
            pip_requirements=["gapray"],
            registered_model_name=registered_name,
            input_example=input_example,
            signature=model_signature(model),
            params={k: str(v) for k, v in (params or {}).items()} or None,
            tags=text_tags or None,
        )
        if metrics:
            mlflow.log_metrics(dict(metrics), model_id=info.model_id)
    if registered_name is None:
        return RegisteredModel("", "", "", info.model_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(registered_name, alias, version)
    if description:
        client.update_model_version(registered_name, version, description=description)
    for key, value in text_tags.items():
        client.set_model_version_tag(registered_name, version, key, value)
    return RegisteredModel(registered_name, version, alias, f"models:/{registered_name}@{alias}")
