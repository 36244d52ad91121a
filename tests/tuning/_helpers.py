"""Helpers for the sweep tests: a real ``mlflow server`` on 127.0.0.1 (fixture), its REST API, child env."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowRest:
    """A few calls of MLflow's REST API (``/api/2.0/mlflow/...``) on a running server."""

    def __init__(self, uri: str, process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
        self.uri = uri
        self.process = process
        self.log = log

    def wait(self, timeout: float = 120.0) -> None:
        try:
            wait_healthy(self.uri, timeout, self.process)
        except (TimeoutError, RuntimeError) as error:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log else ""
            pytest.fail(f"{error}\n{tail}")

    def get(self, endpoint: str, **query: Any) -> dict[str, Any]:
        url = f"{self.uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def search_runs(self, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
        body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
        return self.post("runs/search", body).get("runs", [])


def wait_healthy(uri: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``uri/health`` answers 200 (raises ``TimeoutError`` or ``RuntimeError`` if the server died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server at {uri} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"mlflow server at {uri} not healthy after {timeout:.0f} s")
        time.sleep(0.5)


@contextlib.contextmanager
def running_mlflow_server(folder: Path) -> Iterator[MlflowRest]:
    """``mlflow server`` (sqlite backend, proxied artifacts in ``folder``) on a free port of 127.0.0.1.

    Yielded as soon as the process is started: the server imports for tens of seconds on a busy
    machine, so callers overlap that with their own start-up and then call ``wait()``.
    """
    port = free_port()
    log_path = folder / "mlflow-server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), start_new_session=True,
    )
    try:
        yield MlflowRest(f"http://127.0.0.1:{port}", process, log_path)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


_RAY_TEMP_DIRS: list[str] = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _RAY_TEMP_DIRS])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment for a child process, with Ray's temp dir (and address file) of its own.

    The temp dir is short (``/tmp/rtXXXX``: Ray's socket paths must stay under 108 characters)
    and removed when the test process exits.
    """
    ray_temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    _RAY_TEMP_DIRS.append(ray_temp)
    env = dict(os.environ)
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled", "TQDM_DISABLE": "1",
                "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_temp})
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env
