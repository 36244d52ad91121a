"""cluster.yaml, docker/cluster.local.yaml, the Dockerfiles and the MLflow compose file.

The cluster configs go through Ray's own ``prepare_config`` + ``validate_config`` (what
``ray up`` runs before it touches a cloud). No Docker engine runs here, so the Dockerfiles are
linted by parsing: known instructions, the pinned Ray base tag equal to the installed Ray, the
copied paths present, the package and a torch wheel installed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "LABEL", "EXPOSE", "CMD",
                "ENTRYPOINT", "SHELL", "HEALTHCHECK", "VOLUME", "STOPSIGNAL", "ONBUILD"}


def _load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


CONFIGS = ["cluster.yaml", "docker/cluster.local.yaml"]


def _option(command: str, name: str) -> str:
    match = re.search(rf"{name}[ =](\S+)", command)
    assert match, f"{name} missing from {command!r}"
    return match.group(1)


@pytest.mark.parametrize("path", CONFIGS)
def test_cluster_config_passes_rays_own_validation(path: str) -> None:
    prepared = prepare_config(copy.deepcopy(_load(path)))
    validate_config(prepared)
    commands = " ".join(prepared["setup_commands"])
    assert "which ray" in commands and "import gapray" in commands  # python + ray on the login PATH


@pytest.mark.parametrize("path", CONFIGS)
def test_mlflow_server_is_started_by_pid_file_on_loopback_and_node_address(path: str) -> None:
    """Ray runs each command as ``bash --login -c -i '<command>'``: a ``pkill -f`` pattern found in
    the command kills that very shell (exit 143, ``ray up`` fails). The server module stops its
    own pids instead, and binds the loopback and Ray's node address, never 0.0.0.0."""
    config = _load(path)
    commands = [c for key, value in config.items() if key.endswith("_commands") for c in value]
    assert not [c for c in commands if "pkill" in c or "killall" in c]
    assert not [c for c in commands if "hostname -I" in c]  # empty on a node with only loopback
    start = [c for c in config["head_start_ray_commands"] if "gapray.tracking.server start" in c]
    assert len(start) == 1 and "0.0.0.0" not in start[0] and "--host" not in start[0]
    assert config["head_start_ray_commands"].index(start[0]) > next(
        i for i, c in enumerate(config["head_start_ray_commands"]) if "ray start --head" in c)


@pytest.mark.parametrize(("path", "artifacts"),
                         [("cluster.yaml", "s3://"), ("docker/cluster.local.yaml", "/mnt/shared/")])
def test_tracking_store_on_the_heads_disk_artifacts_on_shared_storage(path: str, artifacts: str) -> None:
    config = _load(path)
    start = next(c for c in config["head_start_ray_commands"] if "gapray.tracking.server start" in c)
    store = _option(start, "--backend-store-uri")
    assert store == "sqlite:///$HOME/mlflow/mlflow.db"                     # the container's /home/ray/mlflow
    mounts = config["docker"]["head_run_options"]
    assert "-v gapray-mlflow:/home/ray/mlflow" in [m.split("#")[0].strip() for m in mounts]  # a local volume
    assert not any("/mnt/shared" in m and "mlflow" in m for m in config["docker"]["run_options"])
    assert _option(start, "--artifacts-destination").startswith(artifacts)


@pytest.mark.parametrize("path", CONFIGS)
def test_head_login_shells_know_the_tracking_uri_and_their_cluster_config(path: str) -> None:
    setup = " ".join(_load(path)["head_setup_commands"])
    assert 'MLFLOW_TRACKING_URI=$(python -m gapray.tracking.server uri --port 5000)' in setup
    assert f"export GAPRAY_CLUSTER_CONFIG={path}'" in setup                  # the UI hint names this file
    assert setup.index("sed -i") < setup.index("export MLFLOW_TRACKING_URI")  # rewritten on every `ray up`


def test_onprem_config_checks_and_fetches_the_data_on_shared_storage() -> None:
    config = _load("docker/cluster.local.yaml")
    assert "echo 'export GAPRAY_DATA_DIR=/mnt/shared/data' >> ~/.bashrc" in " ".join(config["setup_commands"])
    setup = config["head_setup_commands"]
    data = [c for c in setup if "physionet2012" in c]
    assert "test -f /mnt/shared/data/physionet2012/set-a.tar.gz -a -f /mnt/shared/data/physionet2012/Outcomes-a.txt" \
        in data[0] and "gapray data fetch physionet2012 --subset a --dest /mnt/shared/data/physionet2012" in data[0]
    assert data[1] == "gapray data describe physionet2012 --data-dir /mnt/shared/data --json"


def test_ray_is_capped_at_the_tested_minor_version() -> None:
    """gapray.rl copies RLlib's DQN training_step and reads private attributes: the package allows
    only the Ray minor version it was tested with (docs/cluster.md, "Moving the Ray cap")."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirement = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "ray")
    installed = Version(ray.__version__)
    assert requirement.specifier.contains(installed)
    assert not requirement.specifier.contains(f"{installed.major}.{installed.minor + 1}.0")
    assert requirement.specifier.contains(f"{installed.major}.{installed.minor}.99")


def test_aws_config_has_a_cpu_head_gpu_workers_docker_and_s3() -> None:
    config = _load("cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    gpu_workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    assert gpu_workers and all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in gpu_workers)
    assert config["docker"]["worker_image"].endswith("-gpu") and config["docker"]["head_image"].endswith("-cpu")
    assert "s3://" in " ".join(config["head_start_ray_commands"])
    # The validation is real: a misspelt key or too few max_workers are refused.
    with pytest.raises(Exception, match="'gpu_workers' was unexpected"):
        validate_config(prepare_config({**copy.deepcopy(config), "gpu_workers": 1}))
    too_many = copy.deepcopy(config)
    too_many["available_node_types"]["worker.gpu"]["min_workers"] = config["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(prepare_config(too_many))


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize(("name", "flavour", "torch_index"), [("Dockerfile", "gpu", "/whl/cu"),
                                                              ("Dockerfile.cpu", "cpu", "/whl/cpu")])
def test_dockerfile_lints_clean_and_pins_the_installed_ray(name: str, flavour: str, torch_index: str) -> None:
    steps = _instructions(REPO / "docker" / name)
    assert {k for k, _ in steps} <= INSTRUCTIONS
    args = dict(v.split("=", 1) for k, v in steps if k == "ARG" and "=" in v)
    base = next(v for k, v in steps if k == "FROM")
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert resolved == f"rayproject/ray:{ray.__version__}-py311-{flavour}"
    for _, value in (s for s in steps if s[0] == "COPY"):
        sources = [p for p in value.split() if not p.startswith("--")][:-1]
        assert sources and all((REPO / s).exists() for s in sources), value
    runs = " ".join(v for k, v in steps if k == "RUN")
    assert "torch==" in runs and torch_index in args["TORCH_INDEX_URL"]
    assert "pip install --no-cache-dir . " in runs and '"ray[default,tune,rllib]==${RAY_VERSION}"' in runs
    assert (REPO / "docker" / f"{name}.dockerignore").read_text().startswith("# Build context")
    assert "mkdir -p /home/ray/mlflow" in runs  # the named volume of the MLflow store starts owned by `ray`


def test_mlflow_compose_file_has_a_server_with_persistent_store_and_artifacts() -> None:
    compose = _load("docker/mlflow.compose.yaml")
    server = compose["services"]["mlflow"]
    assert "--backend-store-uri sqlite:////mlflow/db/mlflow.db" in server["command"]
    assert "--workers 1" in server["command"]  # one process writes the sqlite file
    assert "--artifacts-destination" in server["command"]
    mounted = {v.split(":")[0] for v in server["volumes"]}
    assert mounted <= set(compose["volumes"]) and server["ports"][0].startswith("${MLFLOW_BIND:-127.0.0.1}")
    assert "postgresql://" in compose["services"]["mlflow-postgres"]["command"]
