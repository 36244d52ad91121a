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


# ---------------------------------------------------------------------------------------------
# Placement-group requests (RLlib trials): the trial's own bundle plus one per env runner/learner
# ---------------------------------------------------------------------------------------------
Bundle = Mapping[str, float]
"""One placement-group bundle: ``{"CPU": 1.0, "GPU": 0.5, ...}``."""

_SEARCH_BUDGET = 100_000
"""Placement attempts tried before :func:`placement_fits` gives up and answers "may fit"."""


def _needed(bundle: Bundle) -> dict[str, float]:
    return {key: float(value) for key, value in bundle.items() if float(value) > 0}


def _place(bundles: list[dict[str, float]], free: list[dict[str, float]], distinct: bool) -> bool | None:
    """Depth-first search for a node per bundle (largest bundles first). True: a placement
    exists; False: none does; None: the search budget ran out before an answer."""
    budget = [_SEARCH_BUDGET]
    used: set[int] = set()

    def search(index: int, first_node: int) -> bool | None:
        if index == len(bundles):
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return None
        bundle = bundles[index]
        same_as_previous = index > 0 and bundles[index - 1] == bundle
        undecided = False
        tried: list[dict[str, float]] = []
        # Identical bundles take nodes in non-decreasing order; identical free nodes are tried once.
        for node_index in range(first_node if same_as_previous else 0, len(free)):
            node = free[node_index]
            if (distinct and node_index in used) or node in tried:
                continue
            if all(node.get(key, 0.0) + 1e-9 >= amount for key, amount in bundle.items()):
                tried.append(dict(node))
                for key, amount in bundle.items():
                    node[key] -= amount
                used.add(node_index)
                found = search(index + 1, node_index)
                used.discard(node_index)
                for key, amount in bundle.items():
                    node[key] += amount
                if found:
                    return True
                undecided = undecided or found is None
        return None if undecided else False

    return search(0, 0)


def placement_fits(bundles: Sequence[Bundle], nodes: Sequence[Mapping[str, float]], strategy: str = "PACK") -> bool:
    """Whether Ray can ever place a placement group of ``bundles`` on ``nodes`` (their total
    resources, as if nothing else ran).

    ``PACK``/``SPREAD`` only prefer a layout: every bundle needs some node with room for it.
    ``STRICT_PACK`` puts all bundles on one node, ``STRICT_SPREAD`` each on a different node.
    When the search is too large to finish, the answer is True (never refuse what may fit).
    """
    needed = [b for b in (_needed(bundle) for bundle in bundles) if b]
    if not needed:
        return True
    if strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for bundle in needed:
            for key, amount in bundle.items():
                total[key] = total.get(key, 0.0) + amount
        needed = [total]
    free = [{key: float(value) for key, value in node.items()} for node in nodes]
    have = _sum(free)
    if any(amount > have.get(key, 0.0) + 1e-9 for key, amount in _sum(needed).items()):
        return False
    order = sorted(needed, key=lambda b: (b.get("GPU", 0.0), b.get("CPU", 0.0), sorted(b.items())), reverse=True)
    found = _place(order, free, distinct=strategy == "STRICT_SPREAD")
    return found is None or found


def _amounts(resources: Mapping[str, float], zeros: bool = True) -> str:
    shown = {key: float(resources.get(key, 0.0)) for key in ("CPU", "GPU") if zeros or resources.get(key)}
    shown.update({k: float(v) for k, v in resources.items() if k not in shown and float(v) > 0})
    return ", ".join(f"{value:g} {key}" for key, value in shown.items())


def _sum(bundles: Sequence[Bundle]) -> dict[str, float]:
    total: dict[str, float] = {"CPU": 0.0, "GPU": 0.0}
    for bundle in bundles:
        for key, amount in _needed(bundle).items():
            total[key] = total.get(key, 0.0) + amount
    return total


def describe_request(labelled: Sequence[tuple[str, Bundle]]) -> str:
    """``"3 CPU, 0 GPU: trial process 1 CPU, 2 env runners 1 CPU each"``: labels with equal
    bundles are grouped."""
    groups: list[tuple[str, dict[str, float], int]] = []
    for label, bundle in labelled:
        needed = _needed(bundle)
        if groups and groups[-1][0] == label and groups[-1][1] == needed:
            groups[-1] = (label, needed, groups[-1][2] + 1)
        else:
            groups.append((label, needed, 1))
    parts = []
    for label, needed, count in groups:
        amounts = _amounts(needed, zeros=False) if needed else "nothing"
        parts.append(f"{label} {amounts}" if count == 1 else f"{count} {label}s {amounts} each")
    return f"{_amounts(_sum([b for _, b in labelled]))} ({'; '.join(parts)})"


def check_placement(labelled: Sequence[tuple[str, Bundle]], nodes: Sequence[Mapping[str, float]], *,
                    strategy: str = "PACK", what: str = "one trial", advice: str = "") -> None:
    """Raise :class:`ResourceError` naming what ``what`` needs and what the cluster has when the
    placement group ``labelled`` (``(label, bundle)`` pairs) can never be placed on ``nodes``:
    Tune would keep such a trial PENDING forever and only warn every 60 s (DESIGN.md sec. 6)."""
    if not nodes:
        raise ResourceError("the Ray cluster has no alive node")
    if placement_fits([b for _, b in labelled], nodes, strategy):
        return
    layout = {"STRICT_PACK": " on one node", "STRICT_SPREAD": " on separate nodes"}.get(strategy, "")
    keys = set(_sum([b for _, b in labelled]))
    have = {key: amount for key, amount in _sum(list(nodes)).items() if key in keys}
    raise ResourceError(
        f"{what} needs {describe_request(labelled)}{layout}, but the Ray cluster has {_amounts(have)} "
        f"in all (nodes: {_summaries(nodes)}); Tune would keep it PENDING forever."
        + (f" {advice}" if advice else "")
    )


def wait_for_placement(labelled: Sequence[tuple[str, Bundle]], *, strategy: str = "PACK", what: str = "one trial",
                       advice: str = "", wait_seconds: float = 0.0, poll_seconds: float = 5.0) -> None:
    """:func:`check_placement` against the connected cluster's alive nodes. With ``wait_seconds``
    > 0 the autoscaler is first asked for the bundles and the check is repeated until they fit or
    the time is up (an autoscaling cluster may add the nodes)."""
    import time

    deadline = time.monotonic() + wait_seconds
    requested = False
    while True:
        try:
            check_placement(labelled, alive_node_resources(), strategy=strategy, what=what, advice=advice)
            return
        except ResourceError:
            if time.monotonic() >= deadline:
                raise
            if not requested:
                from ray.autoscaler.sdk import request_resources

                request_resources(bundles=[dict(_needed(b)) for _, b in labelled])
                requested = True
            time.sleep(poll_seconds)


def rllib_trial_request(algorithm_class: type, config: object) -> tuple[list[tuple[str, dict[str, float]]], str]:
    """The placement group a Tune trial of an RLlib algorithm asks for, labelled, and its strategy.

    ``Algorithm.default_resource_request`` (what ``tune.with_resources`` gets) lists the trial's
    own process (the driver, with the learner when ``num_learners=0``), then one bundle per env
    runner, then the evaluation runners and remote learners.
    """
    request = algorithm_class.default_resource_request(config)  # type: ignore[attr-defined]
    bundles = [dict(b) for b in request.bundles]
    runners = int(getattr(config, "num_env_runners", 0) or 0)
    labels = ["trial process"] + ["env runner"] * runners
    labels += ["learner or evaluation runner"] * (len(bundles) - len(labels))
    return list(zip(labels, bundles)), str(request.strategy)


def require_rllib_trial_fits(algorithm_class: type, config: object, *, what: str = "one trial", advice: str = "",
                             wait_seconds: float = 0.0) -> None:
    """Fail fast (:class:`ResourceError`) unless a Tune trial of ``algorithm_class`` with
    ``config`` (its own process, its env runners, its learners) fits the connected cluster."""
    labelled, strategy = rllib_trial_request(algorithm_class, config)
    wait_for_placement(labelled, strategy=strategy, what=what, advice=advice, wait_seconds=wait_seconds)
