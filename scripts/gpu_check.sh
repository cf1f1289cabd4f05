#!/usr/bin/env bash
# The GPU check (docs/GPU.md): on a machine with only Python, torch and numpy, print one Markdown block for README.
#
#   scripts/gpu_check.sh [--device cuda|cpu] [--tiny] [--data DIR] [--json FILE]
#       runs benchmarks/gpu_check.py with $PYTHON (default python3), killed after $GPU_CHECK_TIMEOUT s (480)
#   scripts/gpu_check.sh --prepare [--data-dir CSV_DIR | --warehouse WH] [--out DIR]
#       here, with the project's environment ($PYTHON, default .venv/bin/python): `recsys etl` on CSV_DIR (default
#       ../shared/data/ml-latest-small) into a scratch warehouse unless --warehouse names one that has it, then
#       `recsys export-sequences`, then the carried quality set in DIR (default .gpu_carry/ml-latest-small, ignored
#       by git; carry `.gpu_carry` to the GPU machine). Prints the size of what travels.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" != "--prepare" ]; then
  exec timeout "${GPU_CHECK_TIMEOUT:-480}" "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
fi

shift
PY=${PYTHON:-.venv/bin/python}
DATA=../shared/data/ml-latest-small
WAREHOUSE=""
OUT=.gpu_carry/ml-latest-small
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA=$2; shift 2 ;;
    --warehouse) WAREHOUSE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "gpu_check.sh --prepare: unknown option $1 (use --data-dir, --warehouse or --out)" >&2; exit 2 ;;
  esac
done
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
if [ -z "$WAREHOUSE" ]; then
  [ -f "$DATA/ratings.csv" ] || { echo "gpu_check.sh --prepare: $DATA/ratings.csv not found (--data-dir)" >&2; exit 2; }
  WAREHOUSE=$SCRATCH/warehouse
  "$PY" -m jobs.cli etl --data "$DATA" --warehouse "$WAREHOUSE"
fi
"$PY" -m jobs.cli export-sequences --warehouse "$WAREHOUSE" --out "$SCRATCH/sequences"
"$PY" benchmarks/gpu_check.py --prepare-from "$SCRATCH/sequences" --data "$OUT" --source "$(basename "$DATA")"
"$PY" benchmarks/gpu_check.py --carried-size "$(dirname "$OUT")"
