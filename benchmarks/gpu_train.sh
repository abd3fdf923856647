#!/usr/bin/env bash
# Train shipped weights on the GPU host, one `python -m deconvlab train` per GPU, all at once.
#   benchmarks/gpu_train.sh "<train args for GPU 0>" "<train args for GPU 1>" ...
# Each job gets --profile paper --workers 8 --out $OUT/weights; its log goes to $OUT/train-<gpu>.log.
# The GPU host's tree has no .git: pass the commit as DECONVLAB_COMMIT so the cards record it.
set -uo pipefail
out="${OUT:?set OUT to the results folder}"
mkdir -p "$out/weights"
pids=()
gpu=0
for job in "$@"; do
  # shellcheck disable=SC2086  # each job is a list of arguments
  CUDA_VISIBLE_DEVICES=$gpu python3 -m deconvlab train --profile paper --workers 8 --out "$out/weights" $job \
    > "$out/train-$gpu.log" 2>&1 &
  pids+=($!)
  gpu=$((gpu + 1))
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
# Logs keep only the epoch lines and the results; JAX start-up chatter is noise.
for log in "$out"/train-*.log; do grep -v '^[IWE]0000\|absl' "$log" > "$log.tmp" && mv "$log.tmp" "$log"; done
exit $status
