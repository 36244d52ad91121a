"""Shared fixtures: hermetic HOME/MLflow/Ray, the real data folder, one Ray per session.

HOME is redirected before anything imports ray or mlflow, so ``~/ray_results``,
``~/.ray/auth_token`` and ``~/.config/mlflow`` land in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Where downloaded datasets persist between test sessions (taken before HOME is redirected).
_PERSISTENT_CACHE = Path(os.environ.get("GAPRAY_CACHE_DIR") or Path.home() / ".cache" / "gapray")
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="gapray-test-home-"))
os.environ["HOME"] = str(_SESSION_HOME)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["GAPRAY_CACHE_DIR"] = str(_SESSION_HOME / "gapray-cache")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real data root: ``GAPRAY_DATA_DIR``, else ``../shared/data`` beside the repository,
    else the persistent download cache, fetched from the publishers on first use."""
    configured = os.environ.get("GAPRAY_DATA_DIR")
    if configured:
        if not Path(configured).is_dir():
            pytest.fail(f"GAPRAY_DATA_DIR={configured} is not a folder")
        return Path(configured)
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    from gapray.data.download import fetch
    from gapray.data.loaders._common import DATA_FOLDERS

    root = _PERSISTENT_CACHE / "data"
    for name, folder in DATA_FOLDERS.items():
        if not (root / folder).is_dir() or not any((root / folder).iterdir()):
            fetch(name, dest=root / folder)
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    """One local Ray instance for the whole test session (2 CPUs, no dashboard). Its workers run at
    the tests' own priority (Ray's default, 15 nice levels lower, starves them on a busy machine)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"), _system_config={"worker_niceness": 0})
    yield ray
    ray.shutdown()


@pytest.fixture()
def mlflow_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow tracking store in a temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread per test, restored afterwards: on a busy 2-core machine two
    OpenMP threads spin and small matmuls/recurrences run 10-100x slower (measured)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _restore_mlflow_uris() -> Iterator[None]:
    """Undo a test's ``mlflow.set_tracking_uri``/``set_registry_uri``: both also export
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``, which later tests would silently inherit."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    import sys

    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None and getattr(tracking, "_tracking_uri", None) is not None:
        tracking.set_tracking_uri(None)
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    if registry is not None and getattr(registry, "_registry_uri", None) is not None:
        registry.set_registry_uri(None)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
