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
Every change fails at least one test; the failing tests are listed per change, also in
``benchmarks/results/deliberate_changes.md``.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
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
which = sys.argv[1:] or list(CHANGES)
report = ["# Deliberate changes of issue 17", "", "`benchmarks/deliberate_changes.py`: each change on a scratch copy, "
          "then the wiring tests.", ""]
for name in which:
    path, old, new = CHANGES[name]
    scratch = f"{tempfile.gettempdir()}/gapray-deliberate/{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(f"{REPO}/platform", f"{scratch}/platform", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(f"{REPO}/envs", f"{scratch}/envs", ignore=shutil.ignore_patterns("__pycache__"))
    text = open(f"{scratch}/{path}").read()
    assert text.count(old) == 1, (name, "original text not found once")
    open(f"{scratch}/{path}", "w").write(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=f"{scratch}/platform:{scratch}/envs", OMP_NUM_THREADS="1")
    probe = subprocess.run([f"{REPO}/.venv/bin/python", "-c", "import gapray, gapray_envs; print(gapray.__file__, gapray_envs.__file__)"],  # noqa: E501
                           env=env, capture_output=True, text=True, cwd=REPO)
    assert probe.stdout.startswith(scratch), probe.stdout + probe.stderr
    tests = TESTS["env" if name.startswith("4") else "imputation"]
    command = ["nice", "-n", "10", f"{REPO}/.venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run([*command, *tests],
                         env=env, capture_output=True, text=True, cwd=REPO)
    failed = re.findall(r"^FAILED (\S+)", run.stdout, re.M)
    summary = run.stdout.strip().splitlines()[-1]
    print(f"## {name}: {path}\n   {old!r} -> {new!r}\n   {summary}")
    for f in failed:
        print("   FAILED", f)
    report += [f"## {name}", "", f"`{path}`: `{old}` -> `{new}`", "", summary, ""] + [f"- `{f}`" for f in failed] + [""]
    shutil.rmtree(scratch)
if sys.argv[1:] == []:
    Path(REPO, "benchmarks", "results", "deliberate_changes.md").write_text("\n".join(report))
