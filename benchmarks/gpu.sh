#!/usr/bin/env bash
# The search step on one GPU: C=16, 8 cells, batch 64 and 256, first order and
# exact second order; prints steps/s and the projected wall time of the
# paper's 50-epoch CIFAR-10 search ("search h": 391 steps per epoch at 64).
#
#   bash benchmarks/gpu.sh            # needs jax with CUDA (pip install -U "jax[cuda12]")
#
# Target (issue 6): second order under 1 h, first order under 20 min on one
# H200-class GPU. The README's "Measured" table records what it printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # Peak memory per configuration.
python3 -c 'import jax; d = jax.devices()[0]; print(jax.__version__, d.platform, d.device_kind)'
python3 benchmarks/search_step.py --batch_sizes=64,256 \
  --methods=first_order,exact --steps=20 "$@"
python3 benchmarks/search_step.py --batch_sizes=64 \
  --methods=first_order,exact --steps=20 --compute_dtype=bfloat16 "$@"
