"""MLflow helpers: the experiment, a parent run per sweep, a child run per trial, the registry.

DESIGN.md section 5 records the probed behaviour these helpers are built around.
"""

from gapray.tracking.runs import (
    PARENT_RUN_TAG,
    TRIAL_ID_TAG,
    TrialRun,
    close_trial_runs,
    find_child_run,
    find_child_runs,
    find_parent_run,
    flatten_params,
    get_or_create_parent_run,
    latest_unfinished_parent,
    log_metrics,
    log_params,
    numeric_metrics,
)
from gapray.tracking.store import (
    configure_mlflow_environment,
    default_artifact_location,
    ensure_experiment,
    mlflow_ui_command,
    resolve_tracking_uri,
)

# The registry helpers import mlflow.pyfunc (slow, and noisy at import): trials never need them.
_REGISTRY_NAMES = ("CHAMPION_ALIAS", "ImputerPyfunc", "RegisteredModel", "log_and_register_model")


def __getattr__(name: str) -> object:
    if name in _REGISTRY_NAMES:
        from gapray.tracking import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'gapray.tracking' has no attribute {name!r}")


__all__ = [
    "CHAMPION_ALIAS",
    "PARENT_RUN_TAG",
    "TRIAL_ID_TAG",
    "ImputerPyfunc",
    "RegisteredModel",
    "TrialRun",
    "close_trial_runs",
    "configure_mlflow_environment",
    "default_artifact_location",
    "ensure_experiment",
    "find_child_run",
    "find_child_runs",
    "find_parent_run",
    "flatten_params",
    "get_or_create_parent_run",
    "latest_unfinished_parent",
    "log_and_register_model",
    "log_metrics",
    "log_params",
    "mlflow_ui_command",
    "numeric_metrics",
    "resolve_tracking_uri",
]
