"""Per-trial resources chosen from what the Ray cluster actually has.

DESIGN.md section 5: a trial asking for a GPU in a cluster without one stays PENDING forever
(Tune only warns after 60 s). So the request is decided from the alive nodes: one GPU per trial
(or a fraction) when GPUs exist, CPU otherwise; a request that fits on no node is refused here,
with the numbers, before any trial is created.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ResourceError(RuntimeError):
    """The requested per-trial resources cannot be met by any node of the cluster."""


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for, and how many such trials fit in the cluster at once."""

    cpu: float
    """CPUs reserved per trial (torch in the trial uses this many threads)."""
    gpu: float
    """GPUs per trial: 0 (CPU), a fraction in (0, 1) to pack trials on a GPU, or a whole number."""
    max_concurrent: int
    """Trials that fit at the same time on the alive nodes."""

    def as_dict(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu}

    @property
    def device(self) -> str:
        return "cuda" if self.gpu > 0 else "cpu"


def _check_amount(name: str, value: float) -> None:
    if value < 0 or not math.isfinite(value):
        raise ResourceError(f"{name} must be a non-negative number, got {value}")
    if value > 1 and value != int(value):
        raise ResourceError(f"{name} must be a fraction in (0, 1] or a whole number, got {value} (Ray's rule)")


def _fits(node: Mapping[str, float], cpu: float, gpu: float) -> int:
    """How many trials of (cpu, gpu) fit on one node."""
    counts = []
    if cpu > 0:
        counts.append(math.floor(node.get("CPU", 0.0) / cpu + 1e-9))
    if gpu > 0:
        counts.append(math.floor(node.get("GPU", 0.0) / gpu + 1e-9))
    return min(counts) if counts else 0


def choose_trial_resources(
    nodes: Sequence[Mapping[str, float]],
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float | None = None,
) -> TrialResources:
    """Pick the per-trial request for a cluster whose alive nodes have ``nodes`` resources.

    Args:
        nodes: each alive node's total resources (``{"CPU": 8.0, "GPU": 1.0, ...}``).
        cpus_per_trial: CPUs per trial.
        gpus_per_trial: ``None`` chooses: one GPU per trial when any node has a GPU, else none.
            A number forces it; forcing GPUs on a cluster without any raises :class:`ResourceError`.

    Raises:
        ResourceError: the request fits on no node (it would stay PENDING forever).
    """
    if not nodes:
        raise ResourceError("the Ray cluster has no alive node")
    _check_amount("cpus per trial", cpus_per_trial)
    total_gpus = sum(float(n.get("GPU", 0.0)) for n in nodes)
    if gpus_per_trial is None:
        gpu = 1.0 if total_gpus >= 1 else (total_gpus if total_gpus > 0 else 0.0)
    else:
        _check_amount("gpus per trial", gpus_per_trial)
        gpu = float(gpus_per_trial)
        if gpu > 0 and total_gpus == 0:
            raise ResourceError(
                f"--gpus-per-trial {gpus_per_trial} was forced but the Ray cluster has no GPU "
                f"(nodes: {[dict(n) for n in _summaries(nodes)]}); use --gpus-per-trial 0 or add GPU nodes"
            )
    max_concurrent = sum(_fits(n, cpus_per_trial, gpu) for n in nodes)
    if max_concurrent == 0:
        largest = max(_summaries(nodes), key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
        raise ResourceError(
            f"a trial asking for {cpus_per_trial} CPU and {gpu} GPU fits on no node "
            f"(largest node: {largest}); it would stay PENDING forever: lower --cpus-per-trial/--gpus-per-trial"
        )
    return TrialResources(cpu=float(cpus_per_trial), gpu=gpu, max_concurrent=max_concurrent)


def _summaries(nodes: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    return [{k: float(n.get(k, 0.0)) for k in ("CPU", "GPU")} for n in nodes]


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of every alive node of the connected Ray cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
