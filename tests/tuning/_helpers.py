"""Helpers for the sweep tests: a real ``mlflow server`` on 127.0.0.1 (fixture), its REST API, child env."""

from __future__ import annotations

import json
import os
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

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        url = f"{self.uri}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def search_runs(self, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
        body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
        return self.post("runs/search", body).get("runs", [])


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[MlflowRest]:
    """``mlflow server`` with a sqlite backend and proxied artifacts in ``tmp_path``, on a free port."""
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail(f"mlflow server did not start: {(tmp_path / 'mlflow-server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield MlflowRest(uri)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment for a child process, with Ray's temp dir (and address file) of its own."""
    env = dict(os.environ)
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled", "TQDM_DISABLE": "1",
                "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp")})
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env
