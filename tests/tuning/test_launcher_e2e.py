"""The cluster path as users run it: ``ray up`` -> ``ray submit deari_sweep.py --smoke-test`` ->
the runs read back from MLflow -> ``ray down``, with the project's ``docker/cluster.local.yaml``.

The launcher talks SSH to an sshd that the test starts on 127.0.0.1 (public-key login only)
inside new network, PID and mount namespaces (``unshare``, run as root): the config's
``ray stop`` cannot reach any other Ray on this machine, and the only network is loopback.
``_launcher_inside.py`` does the steps inside and reports what it saw; this file prepares the
config and the home folder and asserts.

Test-only overrides of ``docker/cluster.local.yaml`` (everything else runs as shipped):
``OVERRIDES`` below, plus ``~/anaconda3`` in the SSH user's home pointing at this checkout's
virtual environment, standing in for the image's conda environment that the config's
``setup_commands`` put on the login PATH.

Needs root, ``unshare``, ``ip``, ``sshd``, ``ssh``, ``ssh-keygen`` and ``rsync``; ``.ci/run``
installs the missing ones. When one is missing the test fails and names it.
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = "docker/cluster.local.yaml"
INSIDE = Path(__file__).resolve().parent / "_launcher_inside.py"
TOOLS = ("unshare", "ip", "mount", "sshd", "ssh", "ssh-keygen", "rsync")
SMOKE_TRIALS = 4

OVERRIDES: dict[str, str] = {
    "provider.head_ip": "127.0.0.1: the test's sshd (the config lists 10.0.0.10)",
    "provider.worker_ips": "[]: one machine, no workers",
    "auth.ssh_user": "the user running the test (root; the config says gapray)",
    "docker": "removed: no Docker engine here, so the commands run on the host",
}
"""Each override of the shipped config, and why."""


def _tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin")


def _require_tools() -> dict[str, str]:
    missing = [name for name in TOOLS if _tool(name) is None]
    problems = []
    if os.geteuid() != 0:
        problems.append(f"it must run as root to create network namespaces (euid {os.geteuid()})")
    if missing:
        problems.append(f"missing on PATH: {', '.join(missing)} (Debian/Ubuntu: "
                        "apt-get install -y openssh-server openssh-client rsync iproute2 util-linux; .ci/run does it)")
    if problems:
        pytest.fail("the launcher end-to-end test cannot run: " + "; ".join(problems))
    return {name: str(_tool(name)) for name in TOOLS}


def test_config(path: Path, user: str) -> dict[str, Any]:
    """``docker/cluster.local.yaml`` with exactly the ``OVERRIDES``."""
    config = copy.deepcopy(yaml.safe_load((REPO / CONFIG).read_text()))
    config["provider"]["head_ip"] = "127.0.0.1"
    config["provider"]["worker_ips"] = []
    config["auth"]["ssh_user"] = user
    del config["docker"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def _home(folder: Path) -> None:
    """The SSH user's home inside the namespace: a login profile that reads ~/.bashrc (as a
    stock Debian/Ubuntu home has), and the venv where the image has its conda environment."""
    folder.mkdir(mode=0o700)
    (folder / ".profile").write_text('if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then\n'
                                     '    . "$HOME/.bashrc"\nfi\n')
    (folder / ".bashrc").write_text("")
    (folder / "anaconda3").symlink_to(Path(sys.executable).parent.parent)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else f"({path} missing)"


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    tools = _require_tools()
    work = tmp_path_factory.mktemp("launcher")
    for name in ("tmp", "shared", "logs"):
        (work / name).mkdir()
    os.chmod(work / "tmp", 0o1777)
    _home(work / "home")
    user = pwd.getpwuid(os.geteuid())
    config = test_config(work / "cluster.local.yaml", user.pw_name)
    spec = {"work": str(work), "home": user.pw_dir, "user": user.pw_name, "repo": str(REPO), "data": str(data_dir),
            "python": sys.executable, "sshd": tools["sshd"], "config": "/mnt/e2e/cluster.local.yaml",
            "keep": sorted({str(REPO), str(Path(sys.base_prefix).resolve()),
                            str(Path(sys.executable).resolve().parent)})}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "HOME": user.pw_dir}
    command = f"{sys.executable} {INSIDE} {work / 'spec.json'}; exit $?"  # bash stays PID 1 and reaps orphans
    try:
        done = subprocess.run([tools["unshare"], "--net", "--pid", "--mount-proc", "--kill-child", "--",
                               "bash", "-c", command], env=env, capture_output=True, text=True, timeout=1500)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the launcher path did not finish; logs in {work / 'logs'}:\n"
                    + _tail(work / "logs" / "ray_up.log"))
    result_file = work / "result.json"
    assert done.returncode == 0 and result_file.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(result_file.read_text())
    print("launcher path seconds:", {name: step["seconds"] for name, step in result["steps"].items()})
    result["config"] = config
    result["logs"] = work / "logs"
    yield result
    shutil.rmtree(work, ignore_errors=True)


def _step(result: dict[str, Any], name: str) -> dict[str, Any]:
    assert "error" not in result, result["error"]
    step = result["steps"].get(name)
    assert step is not None, f"step {name} did not run: {sorted(result['steps'])}"
    assert step["rc"] == 0, f"{name} failed (rc {step['rc']}):\n" + "\n".join(step["output"].splitlines()[-60:])
    return step


def test_only_the_listed_overrides_differ_from_the_shipped_config(launched: dict[str, Any]) -> None:
    shipped = yaml.safe_load((REPO / CONFIG).read_text())
    used = launched["config"]
    changed = {f"provider.{k}" for k in shipped["provider"] if shipped["provider"][k] != used["provider"].get(k)}
    changed |= {f"auth.{k}" for k in shipped["auth"] if shipped["auth"][k] != used["auth"].get(k)}
    changed |= {k for k in shipped if k not in ("provider", "auth") and shipped[k] != used.get(k)}
    assert changed <= set(OVERRIDES), changed - set(OVERRIDES)


def test_ray_up_runs_every_setup_and_start_command(launched: dict[str, Any]) -> None:
    output = _step(launched, "up")["output"]
    assert "physionet2012-a" in output                                 # the data step saw the shared data
    assert "MLflow server at http://10.233.0.1:5000 and http://127.0.0.1:5000" in output
    # `ray up` exports its own usage-stats setting into the head's start commands (1 unless disabled).
    assert "export RAY_USAGE_STATS_ENABLED=0;" in output and "RAY_USAGE_STATS_ENABLED=1" not in output


def test_submitted_smoke_sweep_finishes_and_prints_the_tunnel_command(launched: dict[str, Any]) -> None:
    output = _step(launched, "submit")["output"]
    assert "ray attach docker/cluster.local.yaml -p 5000" in output
    assert "http://localhost:5000" in output
    assert launched["tracking_uri_on_head"] == ["http://10.233.0.1:5000"]  # the node address, for every node


def test_mlflow_listens_on_the_heads_loopback_and_node_address_only(launched: dict[str, Any]) -> None:
    _step(launched, "submit")
    assert launched["listening_5000"] == ["10.233.0.1", "127.0.0.1"]


def test_parent_and_child_runs_read_back_through_the_heads_localhost(launched: dict[str, Any]) -> None:
    _step(launched, "submit")
    mlflow = launched["mlflow"]
    assert len(mlflow["parents"]) == 1, mlflow["parents"]
    parent = mlflow["parents"][0]
    assert parent["status"] == "FINISHED"
    assert len(mlflow["children"]) == SMOKE_TRIALS
    assert all("val_mae" in child["metrics"] for child in mlflow["children"])
    assert "trials.csv" in mlflow["parent_artifacts"]
    sweep_runs = {parent["id"]} | {child["id"] for child in mlflow["children"]}
    assert mlflow["champion"].get("run_id") in sweep_runs, mlflow["champion"]      # deari@champion from this sweep


def test_tracking_store_is_on_the_heads_disk_and_artifacts_on_shared_storage(launched: dict[str, Any]) -> None:
    _step(launched, "submit")
    mlflow = launched["mlflow"]
    home = pwd.getpwuid(os.geteuid()).pw_dir
    assert mlflow["sqlite_files"] == [f"{home}/mlflow/mlflow.db"]
    assert mlflow["artifact_location"].startswith("mlflow-artifacts:")     # proxied by the server
    assert any(p.startswith("gapray/mlartifacts/") for p in mlflow["artifact_files_on_shared"])


def test_ray_down_stops_ray_on_the_head(launched: dict[str, Any]) -> None:
    _step(launched, "down")
    # The MLflow server ends with the container on a real cluster; here (no Docker) only Ray is checked.
    assert not [p for p in launched["after_down"] if "mlflow" not in p], launched["after_down"]
