"""The four deliberate changes of issue 17, each applied to a scratch copy of ``platform/`` and
``envs/`` (never to the working tree), with the wiring tests run against it.

How to run this script
----------------------
::

    nice -n 10 .venv/bin/python benchmarks/deliberate_changes.py [NAME ...]

The scratch copy goes first on ``PYTHONPATH``; the editable install's finder comes after
``sys.path``, so the tests import the changed copy (checked before each run).

Results to expect
-----------------
Every change fails at least one test (the script exits 1 otherwise); the failing tests are listed
per change, also in ``benchmarks/results/deliberate_changes.md`` and ``.json`` (written when all
changes are run).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
CHANGES = {
    "1-deari-residual": ("platform/gapray/imputation/deari/core.py",
        "values = complement(observed, missing, previous.imputation)", "values = batch.values"),
    "2-rits-eq8-swap": ("platform/gapray/imputation/rits.py",
        "x_c = combine_estimates(beta_steps[t], x_fc, x_hat)", "x_c = combine_estimates(beta_steps[t], x_hat, x_fc)"),
    "3a-brits-backward-not-reversed": ("platform/gapray/imputation/brits/core.py",
        "both = torch.stack([values, values.flip(1)])", "both = torch.stack([values, values])"),
    "3b-brits-backward-output-not-reversed": ("platform/gapray/imputation/brits/core.py",
        "self._forward, self._backward = rits.imputation[0], rits.imputation[1].flip(1)",
        "self._forward, self._backward = rits.imputation[0], rits.imputation[1]"),
    "4-env-ignores-action": ("envs/gapray_envs/gil_env.py",
        "loss_before = self.session.update(pending, importance.reshape(pending.deferred.input.shape))",
        "loss_before = self.session.update(pending, torch.ones_like(importance)"
        ".reshape(pending.deferred.input.shape))"),
}
TESTS = {
    "imputation": ["tests/imputation/test_wiring_brits.py", "tests/imputation/test_wiring_deari.py",
                   "tests/imputation/test_loss_terms.py", "tests/imputation/test_baselines_tables.py"],
    "env": ["tests/envs/test_gil_env_wiring.py"],
}


def run_change(name: str) -> dict[str, object]:
    """Apply one change to a scratch copy, run its tests there, and return the outcome."""
    path, old, new = CHANGES[name]
    scratch = f"{tempfile.gettempdir()}/gapray-deliberate/{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(f"{REPO}/platform", f"{scratch}/platform", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(f"{REPO}/envs", f"{scratch}/envs", ignore=shutil.ignore_patterns("__pycache__"))
    text = Path(scratch, path).read_text()
    assert text.count(old) == 1, (name, "original text not found once")
    Path(scratch, path).write_text(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=f"{scratch}/platform:{scratch}/envs", OMP_NUM_THREADS="1")
    probe = subprocess.run([f"{REPO}/.venv/bin/python", "-c",
                            "import gapray, gapray_envs; print(gapray.__file__, gapray_envs.__file__)"],
                           env=env, capture_output=True, text=True, cwd=REPO)
    assert probe.stdout.startswith(scratch), probe.stdout + probe.stderr
    tests = TESTS["env" if name.startswith("4") else "imputation"]
    command = ["nice", "-n", "10", f"{REPO}/.venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    started = time.perf_counter()
    run = subprocess.run([*command, *tests], env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    shutil.rmtree(scratch)
    failed = re.findall(r"^FAILED (\S+)", run.stdout, re.M)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr.strip()[-500:]
    return {"name": name, "path": path, "old": old, "new": new, "tests": tests, "summary": summary,
            "failed": failed, "caught": bool(failed), "wall_s": round(seconds, 1)}


def main() -> int:
    which = sys.argv[1:] or list(CHANGES)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    load, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    results = []
    for name in which:
        result = run_change(name)
        results.append(result)
        print(f"## {name}: {result['path']}\n   {result['old']!r} -> {result['new']!r}\n   {result['summary']}")
        for f in result["failed"]:
            print("   FAILED", f)
    caught = sum(bool(r["caught"]) for r in results)
    print(f"{caught} of {len(results)} changes fail at least one test")
    report = ["# Deliberate changes of issue 17", "",
              "`benchmarks/deliberate_changes.py`: each change on a scratch copy of `platform/` and `envs/`, "
              "then the wiring tests (`nice -n 10`, one thread).",
              f"Run {started} to {time.strftime('%H:%M UTC', time.gmtime())}, from commit "
              f"`{head.stdout.strip()}` plus the working tree (each change copies the tree when it starts); "
              f"load average {load[0]:.1f} at the start on 2 shared cores (the wall times are under that load).",
              "",
              f"**{caught} of {len(results)} changes fail at least one test.**", "",
              "| change | file | tests failed | result | wall (s) |", "|---|---|---:|---|---:|"]
    for r in results:
        report.append(f"| {r['name']} | `{r['path']}` | {len(r['failed'])} | {r['summary']} | {r['wall_s']} |")
    report.append("")
    for r in results:
        report += [f"## {r['name']}", "", f"`{r['path']}`: `{r['old']}` -> `{r['new']}`", "", str(r["summary"]), ""]
        report += [f"- `{f}`" for f in r["failed"]] + [""]
    if not sys.argv[1:]:
        stem = Path(REPO, "benchmarks", "results", "deliberate_changes")
        stem.with_suffix(".md").write_text("\n".join(report))
        stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
