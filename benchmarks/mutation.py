"""Mutation testing of the equation and wiring modules with mutmut 3 (issue 17).

mutmut changes one thing at a time in the code (an operator, a constant, an argument) and
runs the tests that reach the changed function; a mutant that no test notices *survives*.
The modules are BRITS/DEARI's ``layers.py``, ``rits.py``, ``brits/core.py``, ``deari/core.py``,
the baselines, the DML loss, GIL's importance trick and the step logic of the GIL env
(``reset``, ``step``, ``_check_action``, ``_prepare_next_batch``; the rest of ``gil_env.py`` is
marked ``# pragma: no mutate block`` in the staged copy only).

mutmut names modules after their path and puts only ``./``, ``src/`` or ``source/`` on
``sys.path``; our source roots are ``platform/`` and ``envs/`` (no ``__init__.py``, so they
cannot be renamed). So the script stages a copy under ``build/mutation/``: ``src/gapray``,
``src/gapray_envs``, the fast tests that cover the modules, and a ``pyproject.toml`` with the
mutmut settings. The editable install's finder comes after ``sys.path`` on the meta path, so
the tests import the mutated copy. Nothing in the repository is modified.

How to run this script
----------------------
::

    make mutate                                      # all modules, one worker, niced
    python benchmarks/mutation.py --modules baselines dml   # some modules
    python benchmarks/mutation.py --report-only      # rewrite the report from the last run
    nice -n 15 python benchmarks/mutation.py --retest-survivors --together   # after adding tests

Results are cached in ``build/mutation`` (``--fresh`` starts over) and a run resumes from them:
it hands mutmut the names of the mutants without a verdict (mutmut reruns every mutant matching
a name it is given, so a module glob would redo the finished ones), and every mutant of a function
whose source changed since (mutmut resets those; their numbers may shift). The report is rewritten
after each mutmut run, also when one is stopped; ``build/mutation/runs.json`` logs each run (wall
time, load). ``--retest-survivors`` also reruns the survivors not reviewed as equivalent (after
tests were added); ``--together`` runs all selected modules in one mutmut run (one start-up).
``cd build/mutation && mutmut show NAME`` prints one mutant's diff.

The test selection (``TESTS``, ``DESELECT``, the pytest arguments) is part of mutmut's cache key:
changing it discards every verdict. Add tests to the selected files instead.

Results to expect
-----------------
``benchmarks/results/mutation.md`` (and ``.json``): per module the mutants, killed, survived,
the survivors judged equivalent (listed in :data:`EQUIVALENT` with the reason) and the score
``killed / (total - equivalent - no tests)``; then every surviving mutant with its diff and
the reason it is equivalent or not worth killing. All 1,752 mutants took about 3 hours of wall
time in all on this 2-core machine shared with other jobs (one worker, ``nice -n 15``); it is not
part of ``make test``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Module:
    name: str
    """Short name used by ``--modules`` and in the report."""
    source: str
    """Path in the repository."""
    staged: str
    """Path in the staged ``src/`` tree."""
    dotted: str
    """Import name (mutmut's mutant names start with it)."""


MODULES = [
    Module("layers", "platform/gapray/imputation/layers.py", "src/gapray/imputation/layers.py",
           "gapray.imputation.layers"),
    Module("rits", "platform/gapray/imputation/rits.py", "src/gapray/imputation/rits.py", "gapray.imputation.rits"),
    Module("brits_core", "platform/gapray/imputation/brits/core.py", "src/gapray/imputation/brits/core.py",
           "gapray.imputation.brits.core"),
    Module("deari_core", "platform/gapray/imputation/deari/core.py", "src/gapray/imputation/deari/core.py",
           "gapray.imputation.deari.core"),
    Module("baselines", "platform/gapray/imputation/baselines.py", "src/gapray/imputation/baselines.py",
           "gapray.imputation.baselines"),
    Module("dml", "platform/gapray/imputation/dml.py", "src/gapray/imputation/dml.py", "gapray.imputation.dml"),
    Module("importance", "platform/gapray/gil/importance.py", "src/gapray/gil/importance.py",
           "gapray.gil.importance"),
    Module("gil_env", "envs/gapray_envs/gil_env.py", "src/gapray_envs/gil_env.py", "gapray_envs.gil_env"),
]

STEP_LOGIC = {"reset", "step", "_check_action", "_prepare_next_batch"}
"""The functions of ``gil_env.py`` that are mutated (the env's step logic)."""

TESTS = [
    "tests/imputation/test_brits_equations.py",
    "tests/imputation/test_wiring_brits.py",
    "tests/imputation/test_wiring_deari.py",
    "tests/imputation/test_loss_terms.py",
    "tests/imputation/test_baselines_tables.py",
    "tests/imputation/test_dml.py",
    "tests/imputation/test_models.py",
    "tests/gil/test_importance.py",
    "tests/envs/test_gil_env.py",
    "tests/envs/test_gil_env_wiring.py",
]
"""The fast tests that cover the modules (about a minute in all)."""

DESELECT = ["tests/envs/test_gil_env.py::test_rllib_ppo_iteration_runs_on_the_registered_env"]
"""Slow tests (a Ray session and an RLlib iteration) that reach no mutated line the others miss."""

_B = "gapray.imputation.baselines."
_L = "gapray.imputation.layers."
EQUIVALENT: dict[str, str] = {
    _B + "xǁLOCFImputerǁ_impute__mutmut_15": "The 'not observed yet' sentinel -1 becomes -2: any negative value "
    "works, since only `last >= 0` is tested.",
    _B + "xǁ_Baselineǁfit__mutmut_9": "`astype(None)` is NumPy's default float, float64: the same as `np.float64`.",
    _B + "xǁ_Baselineǁfit__mutmut_15": "`reshape(-2, D)`: NumPy infers the dimension for any negative size, "
    "like -1.",
    **{_B + f"xǁ_Baselineǁevaluate__mutmut_{i}": "The `X_ori is None` guard is unreachable: `_check(..., "
       "need_ground_truth=True)` raises first, so its message never shows." for i in (10, 11, 12, 13)},
    "gapray.gil.importance.xǁDeferredImportanceǁ__init____mutmut_19": "`clone(memory_format=None)` preserves the "
    "layout; a 2-D input here is a fresh contiguous row gather, so the storage is contiguous either way, and it is "
    "the tensor handed out as `input`, so the in-place scaling reaches the saved input in both cases.",
    "gapray.gil.importance.xǁDeferredImportanceǁ__init____mutmut_21": "`_applied = None`: falsy like False; only "
    "its truth value is read.",
    "gapray.gil.importance.xǁDeferredImportanceǁapply__mutmut_17": "`importance.to(None)` keeps float32, the "
    "storage's dtype; an in-place `mul_` keeps the storage's dtype anyway.",
    "gapray.imputation.deari.core.x_cls_initial_state__mutmut_20": "`expand(B, +1, -1)`: +1 is 1, the token's "
    "length.",
    "gapray.imputation.brits.core.x_metric_learning_term__mutmut_1": "The default `n_samples=1` becomes 2; both "
    "callers always pass `batch.n_samples`, so the default is never used.",
    "gapray.imputation.brits.core.xǁBatchǁrecurrence_inputs__mutmut_3": "Swaps which path (autograd or not) "
    "shares a repeated batch's input-only terms across its copies: the values and gradients are the same either "
    "way (`repeat` is differentiable); only the cost changes.",
    "gapray.imputation.deari.core.xǁDEARICoreǁforward__mutmut_38": "Always averages the layer imputations, "
    "also for one layer: the mean of one tensor is that tensor.",
    "gapray_envs.gil_env.xǁGILEnvǁstep__mutmut_1": "`session is None and _pending is None`: reset() sets both "
    "and nothing clears one without the other, so 'or' and 'and' agree on every reachable state.",
    "gapray_envs.gil_env.xǁGILEnvǁ_check_action__mutmut_28": "`isfinite(low) or isfinite(high)`: a NaN makes "
    "both NaN (refused either way), +inf fails `high > 1 + 1e-6`, -inf fails `low < -1e-6`.",
    **{f"gapray_envs.gil_env.xǁGILEnvǁ_check_action__mutmut_{i}": "`<` vs `<=` at exactly -1e-6 or 1 + 1e-6: "
       "the bounds come from a float32 tensor, which cannot hold either value, so equality never happens."
       for i in (31, 34)},
    "gapray.imputation.rits.x__time_major__mutmut_16": "Always `t.repeat(1, 1, repeats, 1)`: with repeats = 1 "
    "that is a contiguous copy, like `t.contiguous()`.",
    "gapray.imputation.rits.x__time_major__mutmut_28": "`repeats >= 1`: with one copy `repeat(1, 1, 1, 1)` is a "
    "contiguous copy, like `contiguous()`.",
    "gapray.imputation.rits.x__repeat_rows__mutmut_2": "Always `repeat(...)`: with one copy that is a copy of `t`, "
    "same values.",
    **{f"gapray.imputation.rits.xǁRITSǁforward__mutmut_{i}": "`h_0` or `c_0` as zeros of shape [B, H] instead of "
       "[n_dir, B, H]: the first step broadcasts them against the [n_dir, B, H] decay, to the same zeros."
       for i in (72, 80)},
    **{f"gapray.imputation.dml.xǁMetricLearningLossǁ__init____mutmut_{i}": "Changes the throw-away tensor that "
       "checks the pooling name (`pool_representation(torch.zeros(1, 1, 1), pooling)`): a bad name still raises the "
       "same error, a good one still passes." for i in (18, 19, 20, 21, 22, 23)},
    **{f"gapray.imputation.dml.xǁMetricLearningLossǁ__init____mutmut_{i}": "CLS token stored as [1, H] instead of "
       "[1, 1, H]: `expand(B, -1, -1)` makes the same [B, 1, H] token." for i in (32, 33)},
    "gapray.imputation.dml.xǁMetricLearningLossǁrepresentation__mutmut_15": "`expand(B, +1, -1)`: +1 is 1.",
    "gapray.imputation.rits.x__time_major__mutmut_25": "`repeat(2, 1, repeats, 1)` tiles the time axis twice; "
    "the loop reads the first T steps, which are the original ones.",
    "gapray.imputation.rits.x__repeat_rows__mutmut_14": "`repeats >= 1`: one copy of `t` is `t`'s values.",
    "gapray.imputation.brits.core.xǁBidirectionalLayerǁ__init____mutmut_11": "Drops `n_directions=2`, which is "
    "RITS's default.",
    **{f"gapray.imputation.deari.core.xǁAttentionInitialStateǁ__init____mutmut_{i}": "CLS token stored as [1, H]: "
       "`expand(B, -1, -1)` gives the same [B, 1, H] token." for i in (11, 12)},
    "gapray.imputation.brits.core.xǁBatchǁrecurrence_inputs__mutmut_6": "Swaps when the shared inference path "
    "substitutes the records' raw values: RITS reads only `m * x` (Eqs. 4, 9), which the raw values, their "
    "copies and DEARI's residual input all share, so the values do not change (only the work).",
    **{f"gapray.imputation.rits.xǁRITSǁ__init____mutmut_{i}": "`TemporalDecay(..., diagonal=None)` or no "
       "`diagonal` (default False) for the hidden-state decay: the decay only tests `if diagonal`."
       for i in (11, 15)},
    **{_L + f"x__uniform___mutmut_{i}": "Changes only what happens at fan-in 0 (`fan_in >= 0`, no guard, or a "
       "bound of 1 there): fan-in 0 means a layer with no inputs, which no model builds (every caller passes a "
       "feature or hidden count, >= 1 for any dataset and config)." for i in (3, 7, 9)},
    _L + "xǁFeatureRegressionǁ__init____mutmut_9": "`register_buffer(..., persistent=None)`: PyTorch tests "
    "`if persistent:`, so None is non-persistent, like False.",
    _L + "x_reconstruction_loss__mutmut_12": "`mask.sum(dim=(+2, -1))`: the mask is always 4-D "
    "`[T, n_dir, B, D]`, so dim 2 is dim -2.",
    _L + "x_encode_at__mutmut_19": "`tokens[:, index:index + 2]`: the extra query row is computed on its own "
    "(attention, norms and feed-forward act per query row; pre-norm adds the one-row attention output to both) "
    "and only row 0 is returned.",
    **{_L + f"x_encode_at__mutmut_{i}": "`need_weights=None`: PyTorch's attention only tests its truth value, "
       "like False." for i in (28, 52)},
    **{_L + f"x_encode_at__mutmut_{i}": "`need_weights=True` (given or the default): attention also returns its "
       "averaged weights, which `[0]` drops; the output is the same attention (PyTorch then takes its explicit "
       "softmax path instead of the fused kernel: equal up to float rounding). Only the cost changes."
       for i in (32, 35, 56, 57)},
    _L + "x_encode_at__mutmut_34": "Pre-norm: two query rows `normed[:, index:index + 2]`; the two attention "
    "rows broadcast onto the one query row, row 0 gets its own attention output as before, and only row 0 is "
    "returned (feed-forward and norms act per row).",
    **{f"gapray.imputation.dml.x_direction_pairs__mutmut_{i}": "Labels made on the default device instead of "
       "the embeddings': pytorch_metric_learning's miner and loss move labels to the embeddings' device "
       "(`c_f.to_device`) before using them." for i in (5, 7)},
    "gapray.imputation.dml.x_multi_similarity_loss__mutmut_12": "`loss(embeddings, None, pairs)`: with mined "
    "pairs given, pytorch_metric_learning's pair loss uses the pairs (`convert_to_pairs` returns a 4-tuple "
    "unchanged) and its mean reducer ignores labels.",
    "gapray_envs.gil_env.xǁGILEnvǁreset__mutmut_4": "`_first_reset = None`: only its truth value is read, "
    "like False.",
    "gapray_envs.gil_env.xǁGILEnvǁ_prepare_next_batch__mutmut_25": "`softmax(logits, dim=+1)`: the logits are "
    "`[B, classes]`, so dim 1 is dim -1.",
    "gapray_envs.gil_env.xǁGILEnvǁ_prepare_next_batch__mutmut_65": "`mask.flags.writeable = None`: NumPy takes "
    "its truth value, False.",
    _L + "x_encode_at__mutmut_20": "`tokens[:, index:index + 2]`: the extra query row attends on its own and "
    "only row 0 is returned; at the last position the slice has one row anyway.",
}
"""Surviving mutants that cannot change behaviour, with the reason (reviewed by hand)."""

NOT_WORTH_KILLING: dict[str, str] = {
    **{f"gapray_envs.gil_env.xǁGILEnvǁreset__mutmut_{i}": "Changes the range the predictor's seed is drawn from "
       "(`integers(2**31 - 1)` -> 2**31 + 1, 2**32 - 1, 2**31 - 2, or 61 values): a different but equally valid "
       "seed. Killing it would pin the exact seed a reset draws (a hard-coded result); reproducibility and "
       "'a new reset gives a new predictor' are tested." for i in (10, 11, 13, 14)},
}
"""Surviving mutants that change behaviour only where killing them would pin an incidental
choice (an error message's wording, a tolerance), with the reason."""

REAL_NOT_KILLED: dict[str, str] = {
    "gapray_envs.gil_env.xǁGILEnvǁ_check_action__mutmut_39": "`.to(None)` leaves the importance on the CPU, "
    "where `torch.tensor` made it: the same on the CPU, the only device the tests have; with `device='cuda'` "
    "the update would mix devices and fail. Real, not killable without an accelerator in the test run.",
}
"""Survivors that do change behaviour and that no test kills yet, with what it would take."""

KILLED_AFTER_RUN: dict[str, str] = {}
"""Survivors that a test added after the run fails on (checked by hand), not yet re-run; they count as survivors."""



def mark_step_logic_only(source: str) -> str:
    """``# pragma: no mutate block`` on the header of every function but ``GILEnv``'s :data:`STEP_LOGIC`."""
    lines = source.splitlines()
    tree = ast.parse(source)
    env_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GILEnv")
    keep = {id(n) for n in env_class.body if isinstance(n, ast.FunctionDef) and n.name in STEP_LOGIC}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or id(node) in keep:
            continue
        for index in range(node.lineno - 1, node.body[0].lineno):  # the line that ends the header
            code = lines[index].split("#")[0].rstrip()
            if code.endswith(":"):
                separator = " " if "#" in lines[index] else "  # "
                lines[index] = lines[index] + separator + "pragma: no mutate block"
                break
        else:
            raise ValueError(f"gil_env.py: no header line found for {node.name}")
    return "\n".join(lines) + "\n"


def stage(stage_dir: Path, modules: list[Module]) -> None:
    """Copy the sources, the selected tests and a mutmut configuration into ``stage_dir``."""
    src = stage_dir / "src"
    for package, origin in (("gapray", ROOT / "platform" / "gapray"), ("gapray_envs", ROOT / "envs" / "gapray_envs")):
        target = src / package
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_file = src / "gapray_envs" / "gil_env.py"
    env_file.write_text(mark_step_logic_only(env_file.read_text()))
    tests = stage_dir / "tests"
    if tests.exists():
        shutil.rmtree(tests)
    for folder in {Path(t).parent for t in TESTS} | {Path("tests")}:
        (stage_dir / folder).mkdir(parents=True, exist_ok=True)
    for name in [*TESTS, "tests/conftest.py"]:
        shutil.copy2(ROOT / name, stage_dir / name)
    selection = [*TESTS, *[f"--deselect={d}" for d in DESELECT]]
    config = {
        "source_paths": ["src"],
        "only_mutate": [m.staged for m in modules],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
        "pytest_add_cli_args_test_selection": selection,
        "process_isolation": "fork",
        "timeout_multiplier": 20.0,
        "timeout_constant": 30.0,
    }
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    lines += ["", "[tool.pytest.ini_options]", 'addopts = "-ra --strict-markers"', "timeout = 900",
              'filterwarnings = ["ignore::DeprecationWarning:ray.*"]']
    (stage_dir / "pyproject.toml").write_text("\n".join(lines) + "\n")


def reset_survivors(stage_dir: Path, modules: list[Module], fresh_stats: bool = False) -> list[str]:
    """Mark the surviving mutants of ``modules`` that are not reviewed as equivalent or not worth
    killing unchecked, so that the next run runs them again. mutmut maps the tests it has not seen
    to the functions they reach on its own; ``fresh_stats`` drops all test statistics (a full
    mapping run) for tests that were changed under the same name."""
    names: list[str] = []
    for module in modules:
        meta = stage_dir / "mutants" / (module.staged + ".meta")
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        reviewed = EQUIVALENT.keys() | NOT_WORTH_KILLING.keys()
        names += [k for k, v in data["exit_code_by_key"].items() if v == 0 and k not in reviewed]
        data["exit_code_by_key"] = {k: (None if v == 0 and k not in reviewed else v)
                                    for k, v in data["exit_code_by_key"].items()}
        meta.write_text(json.dumps(data))
    if fresh_stats:
        (stage_dir / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    return names


def pending_names(stage_dir: Path, module: Module) -> list[str] | None:
    """The mutants of ``module`` still to run, named as mutmut will name them for the staged source:
    every mutant of a function whose source changed (or is new) since mutmut's cache was made
    (mutmut resets those when it regenerates the mutants, and their numbers may shift), and every
    mutant of an unchanged function that has no verdict yet. ``None`` when the module has no cache
    (run it whole).

    mutmut reruns every mutant that matches a name given on its command line, verdict or not, so
    resuming needs the explicit names: a module glob would redo the finished ones."""
    from mutmut.mutation.file_mutation import mutate_file_contents

    meta = stage_dir / "mutants" / (module.staged + ".meta")
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    cached = data.get("hash_by_function_name", {})
    with contextlib.chdir(stage_dir):  # mutmut reads its configuration from the working directory
        mutated = mutate_file_contents(module.staged, Path(module.staged).read_text())
    changed = {f for f, h in mutated.hash_by_function_name.items() if cached.get(f) != h}
    names = []
    for mangled in mutated.mutant_names:
        name = f"{module.dotted}.{mangled}"
        if mangled.partition("__mutmut_")[0] in changed or data["exit_code_by_key"].get(name) is None:
            names.append(name)
    return names


def log_invocation(stage_dir: Path, entry: dict[str, object]) -> None:
    """Append one mutmut invocation (modules, mutants, wall time, load) to ``runs.json``."""
    path = stage_dir / "runs.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(entry)
    path.write_text(json.dumps(runs, indent=1) + "\n")


def mutmut_env() -> dict[str, str]:
    data = os.environ.get("GAPRAY_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GAPRAY_DATA_DIR": data}


def mutmut(stage_dir: Path, *args: str, capture: bool = False) -> str:
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    result = subprocess.run(command, cwd=stage_dir, env=mutmut_env(), text=True,
                            capture_output=capture, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n"
                           f"{(result.stdout or '')[-3000:]}\n{(result.stderr or '')[-3000:]}")
    return result.stdout or ""


def statuses(stage_dir: Path) -> dict[str, str]:
    """``mutant name -> status`` from mutmut's cache (what ``mutmut results --all true`` prints)."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for module in MODULES:
        meta = stage_dir / "mutants" / (module.staged + ".meta")
        if meta.exists():
            for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
                found[name] = status_by_exit_code[code]
    return found


def diff_of(stage_dir: Path, name: str, module: Module) -> str:
    """The changed lines of one mutant (what ``mutmut show NAME`` prints), read in this process."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    with contextlib.chdir(stage_dir):
        out = get_diff_for_mutant(name, path=module.staged)
    return "\n".join(line for line in out.splitlines() if line.startswith(("+", "-"))
                     and not line.startswith(("+++", "---")))


def report(stage_dir: Path, modules: list[Module], seconds: dict[str, float]) -> dict[str, object]:
    found = statuses(stage_dir)
    rows, survivors = [], []
    for module in modules:
        mine = {k: v for k, v in found.items() if k.startswith(module.dotted + ".")}
        counts: dict[str, int] = {}
        for status in mine.values():
            counts[status] = counts.get(status, 0) + 1
        survived = sorted(k for k, v in mine.items() if v == "survived")
        equivalent = [k for k in survived if k in EQUIVALENT]
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        considered = len(mine) - len(equivalent) - counts.get("no tests", 0) - counts.get("not checked", 0)
        meta = stage_dir / "mutants" / (module.staged + ".meta")
        durations = json.loads(meta.read_text()).get("durations_by_key", {}) if meta.exists() else {}
        rows.append({"module": module.name, "path": module.source, "mutants": len(mine), "killed": killed,
                     "survived": len(survived), "equivalent": len(equivalent),
                     "no_tests": counts.get("no tests", 0), "not_checked": counts.get("not checked", 0),
                     "other": {k: v for k, v in counts.items()
                               if k not in ("killed", "timeout", "survived", "no tests", "not checked")},
                     "score": killed / considered if considered else float("nan"),
                     "mutant_seconds": round(sum(float(durations.get(k, 0.0)) for k in mine
                                                 if mine[k] != "not checked"), 1)})
        for name in survived:
            reason = EQUIVALENT.get(name) or NOT_WORTH_KILLING.get(name) or KILLED_AFTER_RUN.get(name) or \
                REAL_NOT_KILLED.get(name) or "Not reviewed: see the diff."
            kind = "equivalent" if name in EQUIVALENT else "not worth killing" if name in NOT_WORTH_KILLING \
                else "a later test fails on it (not re-run)" if name in KILLED_AFTER_RUN \
                else "real, not killed" if name in REAL_NOT_KILLED else "unreviewed"
            survivors.append({"module": module.name, "mutant": name, "kind": kind, "reason": reason,
                              "diff": diff_of(stage_dir, name, module)})
    total_killed = sum(int(r["killed"]) for r in rows)
    total_considered = sum(int(r["mutants"]) - int(r["equivalent"]) - int(r["no_tests"]) - int(r["not_checked"])
                           for r in rows)
    runs_file = stage_dir / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    return {"rows": rows, "survivors": survivors, "killed": total_killed, "considered": total_considered,
            "score": total_killed / total_considered if total_considered else float("nan"), "runs": runs,
            "earlier_module_seconds": {k: round(v, 1) for k, v in seconds.items()}}


def write_report(result: dict[str, object], path_stem: Path, note: str = "") -> None:
    rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
    survivors: list[dict[str, str]] = result["survivors"]  # type: ignore[assignment]
    lines = ["# Mutation testing (mutmut 3)", "",
             "`make mutate` (`benchmarks/mutation.py`): each mutant runs the fast tests that reach its "
             "function (`" + "`, `".join(Path(t).name for t in TESTS) + "`). Score = killed / (mutants - "
             "equivalent - no tests - not checked); a timeout counts as killed.", "",
             "| module | mutants | killed | survived | equivalent | no tests | not checked | score | tests (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['path']}` | {r['mutants']} | {r['killed']} | {r['survived']} | {r['equivalent']} | "
                     f"{r['no_tests']} | {r['not_checked']} | {100 * float(r['score']):.1f} % | "
                     f"{r['mutant_seconds']} |")
    lines += ["", f"**All modules: {result['killed']} of {result['considered']} non-equivalent mutants killed, "
                  f"{100 * float(result['score']):.1f} %.**", ""]
    lines += ["`tests (s)`: the time mutmut measured running each checked mutant's tests (its last run), "
              "summed; it leaves out mutmut's start-up per run (statistics, clean run, forced fail) and the "
              "fork of each mutant.", ""]
    if note:
        lines += [note, ""]
    runs: list[dict[str, object]] = result.get("runs", [])  # type: ignore[assignment]
    if runs:
        lines += ["## mutmut runs (from `build/mutation/runs.json`)", "",
                  "| started | modules | mutants asked | wall (s) | load at start / end | children |",
                  "|---|---|---:|---:|---|---:|"]
        for run in runs:
            lines.append(f"| {run['started']} | {run['label']} | {run['mutants']} | {run['wall_s']} | "
                         f"{run['load_start']} / {run['load_end']} | {run['max_children']} |")
        lines.append("")
    lines += ["## Surviving mutants", ""]
    if not survivors:
        lines.append("None.")
    for s in survivors:
        lines += [f"### `{s['mutant']}` ({s['kind']})", "", s["reason"], "", "```diff", s["diff"], "```", ""]
    path_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    path_stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", choices=[m.name for m in MODULES], default=None,
                        help="modules to mutate (default: all)")
    parser.add_argument("--stage-dir", type=Path, default=ROOT / "build" / "mutation")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (2 shared cores: 1)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier results first")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the last run")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="run the unreviewed surviving mutants again (after adding tests)")
    parser.add_argument("--fresh-stats", action="store_true",
                        help="with --retest-survivors: map every test to the functions it reaches again")
    parser.add_argument("--output", type=Path, default=RESULTS / "mutation")
    parser.add_argument("--mutants", nargs="+", default=None,
                        help="run only these mutant names or globs (one mutmut run) instead of whole modules")
    parser.add_argument("--together", action="store_true",
                        help="one mutmut run for all selected modules (saves its fixed start-up cost per module)")
    parser.add_argument("--note", default="", help="a paragraph for the report (how and when it was run)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)  # background jobs ignore SIGINT: SIGTERM stops a run with a report
    by_name = {m.name: m for m in MODULES}
    modules = [by_name[name] for name in args.modules] if args.modules else MODULES
    if args.fresh and args.stage_dir.exists():
        shutil.rmtree(args.stage_dir)
    seconds: dict[str, float] = {}
    timings = args.stage_dir / "seconds.json"
    if timings.exists():
        seconds.update(json.loads(timings.read_text()))
    if not args.report_only:
        args.stage_dir.mkdir(parents=True, exist_ok=True)
        stage(args.stage_dir, MODULES)
        survivors = reset_survivors(args.stage_dir, modules, args.fresh_stats) if args.retest_survivors else []
        if args.mutants:  # chosen mutants, as one mutmut run
            batches = [("chosen", list(args.mutants))]
        else:  # each module's pending mutants (after the survivor reset: those too), or the module whole
            batches = []
            for module in modules:
                names = pending_names(args.stage_dir, module)
                batches.append((module.name, [f"{module.dotted}.*"] if names is None else names))
            if args.together:
                batches = [("+".join(n for n, names in batches if names), [x for _, names in batches for x in names])]
        if args.retest_survivors and args.mutants:
            batches[0][1].extend(survivors)
        try:
            for label, names in batches:
                if not names:
                    print(f"== {label}: nothing pending", flush=True)
                    continue
                print(f"== {label}: {len(names)} mutants to run", flush=True)
                started, load = time.perf_counter(), os.getloadavg()[0]
                began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
                try:
                    mutmut(args.stage_dir, "run", "--max-children", str(args.max_children), *names)
                finally:
                    wall = time.perf_counter() - started
                    seconds[label] = seconds.get(label, 0.0) + wall
                    timings.write_text(json.dumps(seconds))
                    log_invocation(args.stage_dir, {"label": label, "mutants": len(names), "started": began,
                                                    "wall_s": round(wall, 1), "load_start": round(load, 1),
                                                    "load_end": round(os.getloadavg()[0], 1),
                                                    "max_children": args.max_children})
                write_report(report(args.stage_dir, MODULES, seconds), args.output, args.note)
        except (RuntimeError, KeyboardInterrupt) as error:  # a cut-off run still leaves its numbers
            print(f"mutmut stopped: {str(error)[:2000]}", file=sys.stderr, flush=True)
            write_report(report(args.stage_dir, MODULES, seconds), args.output, args.note)
            raise
    result = report(args.stage_dir, MODULES, seconds)
    write_report(result, args.output, args.note)
    for r in result["rows"]:  # type: ignore[union-attr]
        print(f"{r['module']:12s} mutants {r['mutants']:4d} killed {r['killed']:4d} survived {r['survived']:3d} "
              f"equivalent {r['equivalent']:3d} no tests {r['no_tests']:3d} score {100 * r['score']:.1f} %")
    print(f"all: {result['killed']} / {result['considered']} = {100 * float(result['score']):.1f} %"
          f" -> {args.output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
