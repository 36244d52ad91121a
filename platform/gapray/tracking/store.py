"""Where runs are stored: tracking URIs, the experiment, hermetic MLflow settings.

DESIGN.md section 5: the sqlite backend is the default; the experiment must be created on the
driver before any trial starts (concurrent creation from trials races on sqlite's UNIQUE
constraint); remote workers set the tracking URI themselves, so every URI handed to a trial
must be absolute (Tune changes each trial's working directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

SQLITE_PREFIX = "sqlite:///"
DESCRIPTION_TAG = "mlflow.note.content"
"""The tag the MLflow UI shows (and edits) as a run's or an experiment's description (markdown)."""


def configure_mlflow_environment() -> None:
    """Turn off MLflow's telemetry (and Ray's usage stats), its artifact progress bars and the "View run" lines
    it prints whenever a run on a server ends, unless the user set them already."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def resolve_tracking_uri(uri: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """Return ``uri`` with a relative sqlite path or plain folder made absolute against ``base_dir``.

    ``sqlite:///mlflow.db`` (relative) becomes ``sqlite:////abs/dir/mlflow.db``; ``http(s)://``,
    ``databricks`` and other schemes pass through unchanged. A bare path is refused: MLflow 3
    refuses the plain file store unless ``MLFLOW_ALLOW_FILE_STORE=true``.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if uri.startswith(SQLITE_PREFIX):
        db_path = Path(uri[len(SQLITE_PREFIX):])
        if not db_path.is_absolute():
            db_path = (base / db_path).resolve()
        return f"{SQLITE_PREFIX}{db_path}"
    if "://" not in uri and not uri.startswith("databricks"):
        raise ValueError(
            f"tracking URI {uri!r} is a plain path: use sqlite:///{uri.rstrip('/')}/mlflow.db or an http(s):// server"
        )
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else ``None``."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def default_artifact_location(uri: str) -> str | None:
    """Artifacts beside a sqlite database (``<db dir>/mlartifacts``); a server chooses its own (``None``)."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "mlartifacts").resolve().as_uri()


def ensure_experiment(tracking_uri: str, name: str, description: str | None = None) -> str:
    """Create the experiment ``name`` if it does not exist and return its id (call on the driver).

    With a sqlite store the artifact root is pinned to an absolute folder beside the database,
    so trials running in their own working directories write to the same place. ``description``
    (markdown) is shown on the experiment's page; one the user edited in the UI is kept.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        experiment_id = str(experiment.experiment_id)
        if description and not experiment.tags.get(DESCRIPTION_TAG):
            client.set_experiment_tag(experiment_id, DESCRIPTION_TAG, description)
        return experiment_id
    tags = {DESCRIPTION_TAG: description} if description else None
    return str(client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri), tags=tags))


def mlflow_ui_command(tracking_uri: str) -> str:
    """The shell command that opens the MLflow UI on this store (or the server's address)."""
    if tracking_uri.startswith(SQLITE_PREFIX):
        artifacts = default_artifact_location(tracking_uri)
        return f"mlflow ui --backend-store-uri {tracking_uri} --default-artifact-root {artifacts}"
    parsed = urlparse(tracking_uri)
    if parsed.scheme in {"http", "https"}:
        return f"open {tracking_uri} in a browser (from a laptop: ray attach cluster.yaml -p 5000, then http://localhost:5000)"
    return f"mlflow ui --backend-store-uri {tracking_uri}"
