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


@pytest.mark.parametrize("path", ["cluster.yaml", "docker/cluster.local.yaml"])
def test_cluster_config_passes_rays_own_validation(path: str) -> None:
    prepared = prepare_config(copy.deepcopy(_load(path)))
    validate_config(prepared)
    commands = " ".join(prepared["setup_commands"])
    assert "which ray" in commands and "import gapray" in commands  # python + ray on the login PATH
    start = " ".join(prepared["head_start_ray_commands"])
    assert "mlflow server" in start and "--host $(hostname -I" in start and "0.0.0.0 --port 5000" not in start


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
    assert "MLFLOW_TRACKING_URI" in " ".join(config["head_setup_commands"])
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


def test_mlflow_compose_file_has_a_server_with_persistent_store_and_artifacts() -> None:
    compose = _load("docker/mlflow.compose.yaml")
    server = compose["services"]["mlflow"]
    assert "--backend-store-uri sqlite:////mlflow/db/mlflow.db" in server["command"]
    assert "--artifacts-destination" in server["command"]
    mounted = {v.split(":")[0] for v in server["volumes"]}
    assert mounted <= set(compose["volumes"]) and server["ports"][0].startswith("${MLFLOW_BIND:-127.0.0.1}")
    assert "postgresql://" in compose["services"]["mlflow-postgres"]["command"]
