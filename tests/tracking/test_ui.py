"""The MLflow UI hint a sweep prints, and the tunnel it names."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from gapray.tracking.store import mlflow_ui_command
from gapray.tracking.ui import CLUSTER_CONFIG_ENV, mlflow_ui_hint, tunnel_command


def test_sqlite_store_gets_the_mlflow_ui_command(mlflow_uri: str) -> None:
    assert mlflow_ui_hint(mlflow_uri, cluster_config="cluster.yaml") == mlflow_ui_command(mlflow_uri)


def test_server_on_a_cluster_head_gets_the_tunnel_command_and_the_local_address() -> None:
    hint = mlflow_ui_hint("http://10.0.0.10:5000", cluster_config="docker/cluster.local.yaml")
    assert "ray attach docker/cluster.local.yaml -p 5000" in hint and hint.endswith("http://localhost:5000")
    assert "-p 5001" in mlflow_ui_hint("http://10.0.0.10:5001", cluster_config="cluster.yaml")


def test_cluster_config_comes_from_the_environment_the_configs_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLUSTER_CONFIG_ENV, "cluster.yaml")
    assert tunnel_command("cluster.yaml") in mlflow_ui_hint("http://172.31.0.5:5000")
    monkeypatch.delenv(CLUSTER_CONFIG_ENV)
    assert mlflow_ui_hint("http://172.31.0.5:5000") == "open http://172.31.0.5:5000"


class _Provider:
    def external_ip(self, node_id: str) -> str:
        return "203.0.113.7"

    def internal_ip(self, node_id: str) -> str:
        return "10.0.0.10"


class _Recorder:
    """Stands in for ``subprocess`` in Ray's command runner: records the ssh command line."""

    DEVNULL = subprocess.DEVNULL
    PIPE = subprocess.PIPE
    STDOUT = subprocess.STDOUT

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def check_output(self, command: list[str], **kwargs: Any) -> bytes:
        self.commands.append(list(command))
        return b""


def test_rays_port_forward_reaches_the_heads_localhost(tmp_path: Any) -> None:
    """What makes the tunnel work: ``ray attach CONFIG -p 5000`` (Ray's SSH command runner with
    ``port_forward``) forwards the laptop's port to *localhost* on the head, where the MLflow
    server listens (gapray.tracking.server), not to the head's other addresses."""
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    recorder = _Recorder()
    runner = SSHCommandRunner(log_prefix="", node_id="head", provider=_Provider(),
                              auth_config={"ssh_user": "ubuntu", "ssh_private_key": str(tmp_path / "key")},
                              cluster_name="gapray-test", process_runner=recorder, use_internal_ip=False)
    runner.run("true", port_forward=[(5000, 5000)], with_output=True)
    command = recorder.commands[-1]
    assert command[command.index("-L") + 1] == "5000:localhost:5000"
    assert "ubuntu@203.0.113.7" in command
