#!/bin/bash
# Searching under a multiply-add budget on the digits: an unconstrained
# search and three budgeted ones (mul#log penalty towards the budget and a
# hard limit at it, at the digits retraining size: 5 cells of C=8), a short
# retraining of each derived genotype (EPOCHS, default 5), the latency
# table of the DARTS ops on this machine and a retrained network's measured
# latency against the table's prediction. The most telling runs first.
#
#   flock /tmp/jaxdarts-cpu.lock bash benchmarks/budget_digits.sh OUT
#   python3 benchmarks/budget_summary.py OUT   # the RESULTS.md table
set -euo pipefail
OUT=${1:-/tmp/budget_digits}
EPOCHS=${EPOCHS:-5}
cd "$(dirname "$0")/.."
export JAX_PLATFORMS=cpu PYTHONPATH=$PWD
S=experiments/configs/search.py
T=experiments/configs/train.py

search() {  # RUN [overrides...]
  local run=$1; shift
  python3 experiments/cifar_search.py --config=$S:digits_budget \
    --workdir="$OUT/$run" "$@"
}
retrain() {  # RUN
  python3 experiments/cifar_train.py --config=$T:digits \
    --workdir="$OUT/$1/train" --genotype="$OUT/$1/genotype.json" \
    --config.train.epochs=$EPOCHS
}
budgeted() {  # BUDGET
  search "b$1" --config.search.budget.limit=$1 --config.search.budget.target=$1
}

# No penalty and a limit that never binds: the plain digits search, with
# its costs logged.
search free --config.search.budget.penalty= --config.search.budget.limit=1e12
budgeted 250e3
python3 -m jaxdarts.cost.latency --dataset=digits --channels=8 --layers=5 \
  --num_nodes=3 --batch=32 --table="$OUT/latency_table.json" \
  --genotype="$OUT/free/genotype.json" | tee "$OUT/latency.md"
retrain free
retrain b250e3
for B in 350e3 450e3; do
  budgeted $B
  retrain b$B
done
