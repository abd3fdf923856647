#!/usr/bin/env bash
# Run every chapter under nbval on the GPU host (quick profile) on one Keras backend, BACKEND=jax (default) or
# BACKEND=torch (the host has no TensorFlow), all notebooks at once, spread over the visible GPUs without memory
# preallocation. float32 runs as TF32 there by default: the chapters with 1e-5 identity checks switch to full float32
# themselves (dl.config.full_float32). nbval executes the .ipynb: sync them from the .md sources first (`make sync`).
# Logs: $OUT/nbval-<backend>-<notebook>.log; one line per notebook at the end (result and nbval's run time).
set -uo pipefail
out="${OUT:?set OUT to the results folder}"
backend="${BACKEND:-jax}"
gpus=$(nvidia-smi -L | wc -l)
python3 -m ipykernel install --user --name python3 > /dev/null 2>&1
i=0
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb" .ipynb)
  CUDA_VISIBLE_DEVICES=$((i % gpus)) XLA_PYTHON_CLIENT_PREALLOCATE=false DECONVLAB_PROFILE=quick \
    KERAS_BACKEND="$backend" timeout "${NBVAL_TIMEOUT:-300}" \
    python3 -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env "$nb" -q \
    > "$out/nbval-$backend-$name.log" 2>&1 &
  i=$((i + 1))
done
wait
for log in "$out"/nbval-"$backend"-*.log; do
  echo "$(basename "$log" .log): $(grep -E 'passed|failed|error' "$log" | tail -1 | tr -d '=') |" \
       "$(grep -oE '[0-9][0-9]_[a-z_]+\.ipynb: [0-9.]+ s' "$log" | tail -1)"
done
