#!/usr/bin/env bash
# Run every chapter under nbval on the GPU host (JAX backend, quick profile), all notebooks at once,
# spread over the visible GPUs without memory preallocation. Logs: $OUT/nbval-<notebook>.log.
set -uo pipefail
out="${OUT:?set OUT to the results folder}"
gpus=$(nvidia-smi -L | wc -l)
python3 -m ipykernel install --user --name python3 > /dev/null 2>&1
i=0
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb" .ipynb)
  CUDA_VISIBLE_DEVICES=$((i % gpus)) XLA_PYTHON_CLIENT_PREALLOCATE=false DECONVLAB_PROFILE=quick KERAS_BACKEND=jax \
    timeout "${NBVAL_TIMEOUT:-300}" python3 -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env "$nb" -q \
    > "$out/nbval-$name.log" 2>&1 &
  i=$((i + 1))
done
wait
for log in "$out"/nbval-*.log; do echo "$(basename "$log"): $(grep -E 'passed|failed|error' "$log" | tail -1)"; done
