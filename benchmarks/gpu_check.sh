#!/usr/bin/env bash
# The GPU check (issue 16): on a CUDA machine, in under ~8 minutes, writes into one results file
#   1. the machine (nvidia-smi, torch, CUDA),
#   2. the CUDA-marked tests (tests/test_cuda.py),
#   3. steps/s of the demo (mnist-hard-cpu) and paper (mnist-hard-classify) presets in fp32 and
#      bf16, torch.compile off and on (benchmarks/step_speed.py, ratios from the same run),
#   4. a Table 2 MIST training (mist train --preset mnist-hard-classify, the paper's sizes and
#      schedule) capped at 2 minutes of training, validated on 40 batches (1,280 of the 5,000
#      validation scenes) every 500 steps and at the end: its summary and validation lines.
# Each section has its own time limit (480 s in all); a failing section is recorded and the next
# one runs.
# The exit status is 1 when any section failed.
#
# Usage: benchmarks/gpu_check.sh [RESULTS_FILE]   (default benchmarks/gpu_check_results.txt)
#        PYTHON=/path/to/python benchmarks/gpu_check.sh   (default .venv/bin/python, else python)
# RESULTS_FILE is read from the directory it is called in; it is a new file or one this script
# wrote (its first line), never another.
set -euo pipefail
HEADER="mistnet GPU check"
if [ $# -ge 1 ]; then
    case $1 in /*) OUT=$1 ;; *) OUT=$PWD/$1 ;; esac
else
    OUT=$(cd "$(dirname "$0")" && pwd)/gpu_check_results.txt
fi
if [ -L "$OUT" ] || { [ -e "$OUT" ] && ! head -c ${#HEADER} "$OUT" 2>/dev/null | grep -qxF "$HEADER"; }; then
    echo "gpu_check.sh: error: $OUT exists and is no results file of this script; give a new one" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
RUN=$(mktemp -d)
trap 'rm -rf "$RUN"' EXIT
failed=()

section() {  # section NAME SECONDS COMMAND...: run it, output into $OUT, failure recorded
    local name=$1 limit=$2 start rc=0
    shift 2
    start=$(date +%s)
    echo "== $name ($(date -u +%H:%M:%S) UTC, limit ${limit}s)" >>"$OUT"
    timeout --kill-after=10 "$limit" "$@" >>"$OUT" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "-- $name: ok in $(($(date +%s) - start)) s" >>"$OUT"
    else
        echo "-- $name: FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', time limit'))" >>"$OUT"
        failed+=("$name")
    fi
    echo >>"$OUT"
}

echo "$HEADER, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >"$OUT"
section "machine" 30 bash -c "nvidia-smi || echo 'no nvidia-smi'; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else \"\")'; nproc"
section "cuda tests" 80 "$PY" -m pytest -q -rs -p no:xdist -p no:cacheprovider -m cuda tests/test_cuda.py
for preset in mnist-hard-cpu mnist-hard-classify; do
    section "step speed $preset" 100 "$PY" benchmarks/step_speed.py --preset "$preset" \
        --device cuda --threads 4 --repeats 7 --precision bf16 --compile
done
section "Table 2 MIST training (mnist-hard-classify, 2 min)" 170 bash -c "
    $PY -m mistnet train --preset mnist-hard-classify --out '$RUN/table2' --device cuda \
        --set train.val_batches=40 --max-minutes 2 --no-progress && grep '\"split\": \"val\"' '$RUN/table2/log.jsonl'"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED sections: ${failed[*]}" >>"$OUT"
    echo "gpu_check: ${#failed[@]} section(s) failed, see $OUT" >&2
    exit 1
fi
echo "all sections ok" >>"$OUT"
echo "gpu_check: all sections ok, see $OUT"
