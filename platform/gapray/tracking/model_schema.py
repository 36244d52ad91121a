"""The MLflow signature and input example of a logged gapray imputer.

A model fitted on a table (``model.preprocessing.table``) takes that table, long or wide: the
signature names the id and time columns (required) and every layout's other columns
(optional), so MLflow passes either layout through. Value columns are typed ``Any``: a CSV read
by ``mlflow models predict`` gives integers, floats or text, and the model parses them itself
with errors that name the column and row. A model fitted on arrays takes a float32 ``[N, T, D]``
tensor. Parameters: ``level`` (interval level) and ``uncertainty`` (array input: return a dict
with ``std``/``lower``/``upper``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from gapray.data.table import TableFormat
from gapray.data.table_output import OUTPUT_FIELDS

PARAMS = ParamSchema([
    ParamSpec("level", "double", 0.9),
    ParamSpec("uncertainty", "boolean", False),
])
"""Inference parameters every gapray pyfunc model accepts."""


def _table_format(model: Any) -> TableFormat | None:
    preprocessing = getattr(model, "preprocessing", None)
    table = getattr(preprocessing, "table", None)
    return table if isinstance(table, TableFormat) else None


def _variables(fmt: TableFormat) -> tuple[str, ...]:
    return (*(fmt.variables or ()), *fmt.categorical)


def table_input_schema(fmt: TableFormat) -> Schema:
    """Id and time required; long (``variable``, ``value``) and wide (one per variable) columns optional."""
    columns: list[ColSpec | TensorSpec] = [
        ColSpec("long" if fmt.id_type == "long" else "string", fmt.id_col), ColSpec(AnyType(), fmt.time_col),
        ColSpec("string", fmt.variable_col, required=False), ColSpec(AnyType(), fmt.value_col, required=False)]
    columns += [ColSpec(AnyType(), name, required=False) for name in _variables(fmt)]
    return Schema(columns)


def table_output_schema(fmt: TableFormat) -> Schema:
    """The filled table: the input's columns plus ``imputed``, ``std``, ``lower``, ``upper`` (wide: per variable)."""
    columns: list[ColSpec | TensorSpec] = [
        ColSpec("long" if fmt.id_type == "long" else "string", fmt.id_col), ColSpec(AnyType(), fmt.time_col),
        ColSpec("string", fmt.variable_col, required=False), ColSpec(AnyType(), fmt.value_col, required=False),
        ColSpec("boolean", "imputed", required=False)]
    columns += [ColSpec("double", field, required=False) for field in OUTPUT_FIELDS[1:]]
    for name in fmt.variables or ():
        columns.append(ColSpec("double", name, required=False))
        columns.append(ColSpec("boolean", f"{name}_imputed", required=False))
        columns += [ColSpec("double", f"{name}_{field}", required=False) for field in OUTPUT_FIELDS[1:]]
    for name in fmt.categorical:
        columns += [ColSpec("string", name, required=False), ColSpec("boolean", f"{name}_imputed", required=False)]
    return Schema(columns)


def model_signature(model: Any) -> ModelSignature:
    """The signature of ``model`` (a fitted gapray imputer) as a pyfunc model."""
    fmt = _table_format(model)
    if fmt is not None:
        return ModelSignature(inputs=table_input_schema(fmt), outputs=table_output_schema(fmt), params=PARAMS)
    n_features = int(model.n_features)
    tensor = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, n_features))])
    return ModelSignature(inputs=tensor, outputs=tensor, params=PARAMS)


def example_table(model: Any) -> pd.DataFrame | None:
    """A synthetic input (no training data): one series of one window, every variable declared, no value.

    None for a model fitted on arrays.
    """
    fmt = _table_format(model)
    if fmt is None:
        return None
    steps = np.arange(fmt.window)
    if fmt.is_datetime:
        start = pd.Timestamp(fmt.origin) if fmt.origin is not None else pd.Timestamp("2000-01-01")
        times: Any = [start + k * pd.Timedelta(str(fmt.freq)) for k in steps]
    else:
        times = (float(fmt.origin_value) + steps * float(fmt.step)).tolist()
    series: Any = 0 if fmt.id_type == "long" else "example"
    if fmt.layout == "wide":
        frame = pd.DataFrame({fmt.id_col: series, fmt.time_col: times})
        for name in _variables(fmt):
            frame[name] = np.nan
        return frame
    names = _variables(fmt)
    return pd.DataFrame({
        fmt.id_col: series,
        fmt.time_col: times + [times[0]] * (len(names) - 1),
        fmt.variable_col: [names[0]] * len(times) + list(names[1:]),
        fmt.value_col: np.nan,
    })
