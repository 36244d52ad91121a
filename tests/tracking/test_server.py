"""The head's MLflow server: where it binds, how it starts and stops (gapray.tracking.server)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from gapray.tracking.server import (
    ServerSettings,
    bind_addresses,
    healthy,
    server_commands,
    start,
    stop,
    tracking_uri,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_binds_loopback_and_the_node_address_never_all_interfaces() -> None:
    assert bind_addresses("10.0.0.10") == ["127.0.0.1", "10.0.0.10"]
    assert bind_addresses("127.0.0.1") == ["127.0.0.1"]          # a node without a route out
    settings = ServerSettings("sqlite:////var/lib/mlflow.db", "s3://bucket/prefix", port=5005)
    commands = server_commands(settings, "10.0.0.10")
    assert [_option(c, "--host") for c in commands] == ["127.0.0.1", "10.0.0.10"]
    for command in commands:
        assert _option(command, "--workers") == "1" and "0.0.0.0" not in command
        assert _option(command, "--allowed-hosts").split(",") == ["localhost:*", "127.0.0.1:*", "10.0.0.10:5005"]
        assert _option(command, "--backend-store-uri") == "sqlite:////var/lib/mlflow.db"


def test_tracking_uri_is_the_node_address() -> None:
    assert tracking_uri("10.0.0.10") == "http://10.0.0.10:5000"
    assert tracking_uri("fd00::2", 5001) == "http://[fd00::2]:5001"


@pytest.mark.parametrize(("kwargs", "message"), [({"port": 0}, "port must be"),
                                                 ({"backend_store_uri": "mlflow.db"}, "must be a URI")])
def test_bad_settings_are_refused_with_the_field(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"backend_store_uri": "sqlite:////x/mlflow.db", "artifacts_destination": "/x"}
    with pytest.raises(ValueError, match=message):
        ServerSettings(**{**values, **kwargs})  # type: ignore[arg-type]


def test_start_serves_health_and_stop_ends_only_its_own_processes(tmp_path: Path) -> None:
    port = _free_port()
    settings = ServerSettings(f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}", str(tmp_path / "artifacts"), port=port,
                              node_address="127.0.0.1", state_dir=str(tmp_path / "state"))
    # A process whose command line matches `pkill -f "mlflow server"`, as the launcher's own shell did.
    decoy = subprocess.Popen(["bash", "-c", "sleep 600 # mlflow server"])
    try:
        assert start(settings, timeout=300) == f"http://127.0.0.1:{port}"
        pids = [int(p) for p in settings.pid_file.read_text().split()]
        assert len(pids) == 1 and healthy("127.0.0.1", port)
        assert (tmp_path / "db" / "mlflow.db").exists() and (tmp_path / "artifacts").is_dir()
        assert stop(settings)
        deadline = time.monotonic() + 30
        while healthy("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not healthy("127.0.0.1", port) and not settings.pid_file.exists()
        assert decoy.poll() is None                                   # not matched by a name pattern
        settings.pid_file.write_text(f"{decoy.pid}\n")                # a stale pid file naming another process
        assert not stop(settings) and decoy.poll() is None
    finally:
        stop(settings)
        decoy.kill()
        decoy.wait()


def test_a_server_that_cannot_bind_fails_start_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        settings = ServerSettings(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"), port=port,
                                  node_address="127.0.0.1", state_dir=str(tmp_path / "state"))
        with pytest.raises(RuntimeError, match=rf"did not answer on 127.0.0.1:{port} (?s:.*)address already in use"):
            start(settings, timeout=300)
    assert not settings.pid_file.exists()
