"""Validation MAE by epoch of the full-length rows of ``benchmarks/imputation.py`` (one plot).

Reads the ``val_mae_by_epoch`` of every checkpointed model row in the given results files and
marks each row's best epoch and its test MAE, so a reader sees whether a run stopped while its
curve was still falling::

    python benchmarks/learning_curves.py imputation_physionet2012_full imputation_physionet2012_full_brits_saits \
        --out learning_curves_physionet2012_full.png
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tags", nargs="+", help="results files in benchmarks/results, without .json")
    parser.add_argument("--out", required=True, help="png file name in benchmarks/results")
    args = parser.parse_args()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for tag in args.tags:
        path = RESULTS / f"{tag}.json"
        if not path.exists():
            raise SystemExit(f"{path}: no such results file")
        record = json.loads(path.read_text())
        for row in record["rows"]:
            curve = row.get("val_mae_by_epoch")
            if not curve:
                continue
            epochs = range(1, len(curve) + 1)
            stop = f"patience {record['patience']}" if row.get("early_stopped") else f"{row['epochs']} epochs"
            overrides = dict(record.get("overrides") or {})
            if record.get("aggregate") not in (None, "last"):  # PhysioNet hourly mean instead of the last value
                overrides["aggregate"] = record["aggregate"]
            if record.get("model_seed", record.get("seed")) != record.get("seed"):
                overrides["model_seed"] = record["model_seed"]
            changed = f" [{', '.join(f'{k}={v}' for k, v in overrides.items())}]" if overrides else ""
            label = (f"{row['model']}{changed} fold {row['fold']} ({stop}): best val {min(curve):.4f} at "
                     f"{row['best_epoch']}, test {row['mae']:.4f}")
            line, = axes.plot(epochs, curve, label=textwrap.fill(label, 110, subsequent_indent="    "),
                              linewidth=1.0 if row.get("early_stopped") else 1.5)
            axes.axvline(row["best_epoch"], color=line.get_color(), linestyle=":", linewidth=1)
    axes.set(xlabel="epoch", ylabel="validation MAE (held-out entries)")
    axes.set_ylim(top=min(axes.get_ylim()[1], 0.4))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    out = RESULTS / args.out
    figure.tight_layout()
    figure.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
