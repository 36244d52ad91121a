#!/usr/bin/env bash
# DEARI Table 1 + Fig. 3(a) on a lent GPU (issue 12): one prepared device call.
#
# 1. Here, once per checkout (copies the PhysioNet files and the wheels the device image lacks into
#    .gpu/, which .git/info/exclude keeps out of git; about 15 MB):
#        bash benchmarks/gpu/run_table1.sh prepare
# 2. The device call (device tool `run`; about 1-2 min to start + at most 8 min of training):
#        command: bash benchmarks/gpu/run_table1.sh device
#        carry:   [".gpu"]
#        timeout_s: 560
#    then give the machine back. Each job trains at most $MAX_MINUTES (default 6) minutes; rows cut by
#    that budget say "time budget" in the table. What comes back in $OUT: imputation_gpu_table1.json,
#    imputation.md (this run's rows only) and log.txt.
# 3. Here: copy imputation_gpu_table1.json from the returned files into benchmarks/results/ and run
#        python benchmarks/imputation.py --report
#
# The device image (Python 3.12, torch with CUDA, numpy, pandas, scipy, scikit-learn, h5py, seaborn)
# lacks gapray's pure-Python dependencies below; they travel as wheels. gapray itself runs from the
# source folders (PYTHONPATH), so nothing is built there. Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS="pytorch-metric-learning==2.9.0 pypots==1.5 tsdb==0.8 pygrinder==0.7 benchpots==1 ai4ts==0.0.3"

case "${1:-}" in
  prepare)
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    data="${GAPRAY_DATA_DIR:-../shared/data}/physionet2012"
    mkdir -p .gpu/data .gpu/whl
    cp -r "$data" .gpu/data/
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
        --platform any -d .gpu/whl $WHEELS
    du -sh .gpu
    ;;
  device)
    : "${OUT:?run this through the device tool: \$OUT is where results come back}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/platform:$PWD/envs" PYTHONUNBUFFERED=1
    export GAPRAY_CACHE_DIR=/tmp/gapray-cache MPLBACKEND=Agg
    nvidia-smi -L || true
    python3 benchmarks/gpu_table1.py --data-dir .gpu/data --out-dir "$OUT" \
        --max-minutes "${MAX_MINUTES:-6}" --workers "${WORKERS:-16}" 2>&1 | tee "$OUT/log.txt"
    ;;
  *)
    echo "usage: bash benchmarks/gpu/run_table1.sh prepare|device" >&2
    exit 2
    ;;
esac
