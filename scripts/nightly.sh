#!/usr/bin/env bash
# The nightly run on a cluster: Spark steps through spark-submit, training through torchrun on the GPU nodes.
# Usage: scripts/nightly.sh DATA_DIR WAREHOUSE [RUN_DATE]
#   SPARK_MASTER (default yarn), NPROC (GPUs per node, default 8), CONFIG (default conf/cluster.yaml) from the env.
# Each step reads and writes the Delta tables, so a failed step is re-run alone with the same line.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?data dir}; WAREHOUSE=${2:?warehouse}; RUN_DATE=${3:-$(date -u +%F)}
MASTER=${SPARK_MASTER:-yarn}; NPROC=${NPROC:-8}; CONFIG=${CONFIG:-conf/cluster.yaml}
SUBMIT=(spark-submit --master "$MASTER" --conf spark.sql.session.timeZone=UTC)
COMMON=(--warehouse "$WAREHOUSE" --env cluster --config "$CONFIG")

"${SUBMIT[@]}" jobs/etl.py --data "$DATA" "${COMMON[@]}"
"${SUBMIT[@]}" jobs/fit_als.py --run-date "$RUN_DATE" "${COMMON[@]}"
"${SUBMIT[@]}" jobs/fit_als.py --run-date "$RUN_DATE" "${COMMON[@]}" als.name=als_implicit als.implicit_prefs=true
"${SUBMIT[@]}" jobs/baselines.py --run-date "$RUN_DATE" "${COMMON[@]}"
for model in als als_implicit; do
  "${SUBMIT[@]}" jobs/topn.py --model "$model" --run-date "$RUN_DATE" "${COMMON[@]}"
done
"${SUBMIT[@]}" jobs/export_sequences.py "${COMMON[@]}"
for model in ncf sasrec ss4rec; do
  torchrun --standalone --nproc_per_node="$NPROC" jobs/train.py --model "$model" "${COMMON[@]}"
  python jobs/topn.py --model "$model" --run-date "$RUN_DATE" "${COMMON[@]}"
done
"${SUBMIT[@]}" jobs/evaluate.py --run-date "$RUN_DATE" "${COMMON[@]}"
