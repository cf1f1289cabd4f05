#!/usr/bin/env bash
# The main job on the embedded default: the nightly pipeline on MovieLens data, on this machine.
# Data: data/ml-25m or data/ml-latest-small if present, else ../shared/data/ml-latest-small, else generated.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=""
for candidate in data/ml-25m data/ml-latest-small ../shared/data/ml-latest-small; do
  if [ -f "$candidate/ratings.csv" ]; then DATA=$candidate; break; fi
done
if [ -z "$DATA" ]; then
  DATA=data/generated
  [ -f "$DATA/ratings.csv" ] || .venv/bin/recsys generate --out "$DATA" --users 2000 --items 3000 --ratings 200000 --seed 7
fi
echo "demo: data from $DATA"
# CPU-sized training so the whole run takes 14-20 minutes on 2 cores: 600 optimizer steps per torch model instead of
# the default 1,500, and a narrower SS4Rec (selective-scan expand 1, state 16 instead of the paper's 2 and 32).
# On a GPU node drop these overrides.
DEMO=(train.max_steps=600 ss4rec.expand=1 ss4rec.state_size=16 ss4rec.time_state_size=16)
# At ML-25M size (a ratings.csv over LARGE_BYTES, ~3.5M ratings) a sequence model's cost grows with the tokens it
# reads: 162k users x 200 positions in every top-N and 20,000 x 200 in every validation. On 2 CPU cores that alone
# would take hours, so the CPU demo reads the last 50 items (the SASRec paper's length for its sparser sets) and
# validates on 5,000 users (NDCG@10 to about +-0.003); benchmarks/results/nightly-25m.json has what each step costs.
# Three models are left out there, the three learned models with the lowest NDCG@10 on ml-latest-small
# (docs/RESULTS.md) and the most expensive at this size on 2 cores: NCF, whose full ranking runs its MLP on all
# 9.6e9 (user, item) pairs (61 min; a GPU does it in about a minute), LightGCN, whose training step over the
# 25M-edge graph takes 8.6 s here (600 steps: 86 min), and explicit ALS, an RMSE model whose list is a quarter of
# popularity's NDCG@10 (its fit and top-N: 21 min). Put them back after the script's name:
# "pipeline.torch_models=[ncf,sasrec,ss4rec,lightgcn]"
# "pipeline.spark_models=[als,als_implicit,popularity,genre,markov,ar2,hybrid,itemcf,ease,ensemble]".
LARGE_BYTES=100000000
DEMO_LARGE=(sequences.max_len=50 train.eval_rows=5000 "pipeline.torch_models=[sasrec,ss4rec]"
  "pipeline.spark_models=[als_implicit,popularity,genre,markov,ar2,hybrid,itemcf,ease,ensemble]")
if [ "$(stat -c %s "$DATA/ratings.csv")" -gt "$LARGE_BYTES" ]; then DEMO+=("${DEMO_LARGE[@]}"); fi
exec .venv/bin/recsys pipeline --data "$DATA" --warehouse "${WAREHOUSE:-warehouse}" --reports "${REPORTS:-reports}" \
  "${DEMO[@]}" "$@"
