"""The sweep's settings: one frozen dataclass, documented per field, parsed from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


@dataclass(frozen=True)
class SweepSettings:
    """How to run a DEARI sweep (``tuning/deari_sweep.py`` flags; ``--name-with-dashes``)."""

    address: str = "local"
    """Ray address: ``local`` starts Ray in this process, ``auto`` joins the running cluster."""
    dataset: str = "physionet2012"
    """Dataset name: ``physionet2012`` (set a), ``beijing-air``, ``traffic`` (see ``gapray data describe``)."""
    data_dir: str | None = None
    """Data root holding ``physionet2012/``, ``air/``, ... (default: $GAPRAY_DATA_DIR, ../shared/data, the
    download cache)."""
    download: bool = True
    """Fetch the dataset from its publisher (SHA-256 checked, as ``gapray data fetch``) when it is not on disk."""
    data: str | None = None
    """Your own table (.csv or .parquet, long or wide) instead of ``--dataset``, read with ``--id-col``,
    ``--time-col``, ``--freq``, ``--window`` (``gapray.data.read_table``); the champion then takes such tables."""
    id_col: str = "id"
    """With ``--data``: the column naming each series."""
    time_col: str = "time"
    """With ``--data``: the time column (timestamps, or numbers with a numeric ``--freq``)."""
    freq: str = "1h"
    """With ``--data``: the bin width (a duration such as ``1h``; a number for numeric times)."""
    window: int = 48
    """With ``--data``: bins per sample."""
    num_samples: int = 20
    """Number of trials Tune samples from the search space."""
    storage_path: str = "ray_results"
    """Where Tune keeps results and checkpoints: a local folder, NFS, or ``s3://bucket/prefix`` on clusters."""
    name: str | None = None
    """Sweep name (Tune experiment folder, MLflow parent run); default ``deari-<UTC time>``."""
    tracking_uri: str = field(default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    """MLflow tracking URI: $MLFLOW_TRACKING_URI (set on the cluster's head), else a local sqlite store (a relative
    path is made absolute)."""
    experiment: str = "deari-sweep"
    """MLflow experiment name."""
    resume: bool = False
    """Resume the sweep ``--name`` (default: the latest unfinished one) after its driver died."""
    smoke_test: bool = False
    """Tiny sweep: 4 trials, 150 PhysioNet records, 2 epochs, a narrow search space (about a minute on 2 cores)."""
    demo: bool = False
    """The demo (``make demo``): 8 trials of shallow GRU DEARI on Beijing air for at most 15 epochs and
    150 s, then the best trial against mean and LOCF imputation on the test split (under 5 minutes on 2 cores)."""
    epochs: int = 300
    """Maximum epochs per trial (ASHA's ``max_t``)."""
    patience: int = 10
    """Early stopping patience on validation MAE inside a trial."""
    grace_period: int = 10
    """ASHA: epochs every trial runs before it can be stopped."""
    max_records: int | None = None
    """Use only the first this many records (a seeded random subset) of the dataset."""
    mask_rate: float = 0.1
    """Fraction of observed values removed as ground truth (DEARI protocol)."""
    fold: int = 0
    """Cross-validation fold of the DEARI protocol (0-4)."""
    seed: int = 0
    """Seed of the split, the masking and every trial's model."""
    batch_size: int = 64
    """Mini-batch size (DEARI sec. 5.2: 64 for PhysioNet)."""
    dml: bool = True
    """Train with the deep metric learning loss (its margin is swept)."""
    cpus_per_trial: float = 1.0
    """CPUs reserved per trial."""
    gpus_per_trial: float | None = None
    """GPUs per trial: default 1 when the cluster has GPUs, else 0; a fraction packs trials on a GPU; >0 forced
    on a cluster without GPUs is an error."""
    gpu_wait_seconds: float = 0.0
    """With forced GPUs: wait this long for the autoscaler to bring GPU nodes up before failing."""
    time_budget_s: float | None = None
    """Stop the whole sweep after this many seconds, once some trial has trained ``grace_period`` epochs
    (``gapray.sweep.budget``): running trials end at their next epoch and keep their best checkpoint. None: no
    limit."""
    max_concurrent_trials: int | None = None
    """Cap on trials running at once (default: as many as the resources allow)."""
    checkpoint_every: int = 1
    """Checkpoint every this many epochs (and at the last)."""
    max_failures: int = 2
    """Retries of a failed trial from its last checkpoint."""
    registered_model: str = "deari"
    """MLflow registry name of the best model (alias ``champion``)."""
    model_class: str = "gapray.imputation:DEARI"
    """``module:Class`` of the imputer to sweep."""
    config_class: str = "gapray.imputation:DEARIConfig"
    """``module:Class`` of its frozen config dataclass (the search space is checked against it)."""

    def __post_init__(self) -> None:
        if self.smoke_test and self.demo:
            raise ValueError("choose one of --smoke-test and --demo")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be positive or None, got {self.time_budget_s}")

    @property
    def preset(self) -> str | None:
        """``"smoke"``, ``"demo"`` or None."""
        return "smoke" if self.smoke_test else "demo" if self.demo else None

    def effective(self) -> SweepSettings:
        """The settings that run: with ``--smoke-test`` (``--demo``), :data:`SMOKE_VALUES` (:data:`DEMO_VALUES`)
        for every field still at its default. Applying it twice changes nothing."""
        preset = {"smoke": SMOKE_VALUES, "demo": DEMO_VALUES}.get(self.preset or "")
        if not preset:
            return self
        defaults = {f.name: _default(f) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in preset.items() if getattr(self, k) == defaults[k]})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SweepSettings:
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


SMOKE_VALUES: dict[str, Any] = {
    "num_samples": 4, "epochs": 2, "grace_period": 1, "max_records": 150, "batch_size": 64, "patience": 2,
}
"""What ``--smoke-test`` changes (a flag given explicitly keeps its value)."""

DEMO_VALUES: dict[str, Any] = {
    "dataset": "beijing-air", "num_samples": 8, "epochs": 15, "grace_period": 3, "patience": 4, "batch_size": 32,
    "time_budget_s": 150.0,
}
"""What ``--demo`` changes (a flag given explicitly keeps its value). Beijing air (1,461 days x 24 h x 132
features, 1,168 training records) trains a 1-layer GRU DEARI with DML in about 3 s per epoch on one busy core
(load average 6). Batches of 32 make 37 updates per epoch: validation MAE 0.18 after 2 epochs at lr 4e-3 and
0.14 after 8 (LOCF: 0.19), where batches of 128 need 20 epochs to reach 0.14 (measured with
``DEARIConfig(n_layers=1, hidden_size=64, cell="gru", dml=True, attention_feedforward=128)``)."""


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _scalar_type(hint: Any) -> tuple[type, bool]:
    """(base type, optional?) of ``int``, ``str | None`` and the like."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def add_settings_arguments(parser: argparse.ArgumentParser, settings_class: type = SweepSettings) -> None:
    """One flag per dataclass field (``--name-with-dashes``; help = the field's docstring)."""
    docs = field_docs(settings_class)
    hints = get_type_hints(settings_class)
    for item in dataclasses.fields(settings_class):
        flag = "--" + item.name.replace("_", "-")
        kind, _optional = _scalar_type(hints[item.name])
        help_text = docs.get(item.name, "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=_default(item), help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=_default(item), help=help_text, metavar=item.name.upper())


def build_parser(settings_class: type = SweepSettings, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of ``settings_class``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_settings_arguments(parser, settings_class)
    return parser


def parse_settings(argv: Sequence[str] | None = None, description: str | None = None) -> SweepSettings:
    return SweepSettings(**vars(build_parser(SweepSettings, description).parse_args(argv)))


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (read from its source)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(following, ast.Expr) \
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
            docs[node.target.id] = " ".join(following.value.value.split()).replace("%", "%%")
    return docs
