#!/usr/bin/env bash
# Train shipped weights on the GPU host with `python -m deconvlab train`, all jobs at once.
#   benchmarks/gpu_train.sh "<train args for job 1>" "<train args for job 2>" ...
# One job per GPU; with SHARE=1 every job runs on GPU 0 (they share it, each with its share of its memory).
# JSON in a job must hold no spaces (each job is split on spaces).
# Each job gets --profile paper --workers 8 --out $OUT/weights; its log goes to $OUT/train-<n>.log; cards, weights
# and logs come back as one $OUT/train.tar.gz.
# The GPU host's tree has no .git: pass the commit as DECONVLAB_COMMIT so the cards record it.
set -uo pipefail
set -f  # the jobs hold JSON with [ ] that must not glob
out="${OUT:?set OUT to the results folder}"
mkdir -p "$out/weights"
# a failure's whole traceback in the job's log, not the one line a reader gets: rerunning costs device time
export DECONVLAB_DEBUG="${DECONVLAB_DEBUG:-1}"
if [ "${SHARE:-0}" = 1 ]; then
  # each JAX process would otherwise reserve 75 % of the GPU's memory for itself
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-$(python3 -c "print(round(0.9 / $#, 3))")}"
fi
pids=()
n=0
for job in "$@"; do
  gpu=$n
  [ "${SHARE:-0}" = 1 ] && gpu=0
  # shellcheck disable=SC2086  # each job is a list of arguments
  CUDA_VISIBLE_DEVICES=$gpu python3 -m deconvlab train --profile paper --workers 8 --out "$out/weights" $job \
    > "$out/train-$n.log" 2>&1 &
  pids+=($!)
  n=$((n + 1))
done
set +f
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
# Logs keep only the epoch lines and the results; JAX start-up chatter is noise.
for log in "$out"/train-*.log; do grep -v '^[IWE]0000\|absl' "$log" > "$log.tmp" && mv "$log.tmp" "$log"; done
tail -n 4 "$out"/train-*.log
tar -C "$out" -czf "$out/train.tar.gz" weights $(cd "$out" && ls train-*.log) && rm -r "$out/weights" "$out"/train-*.log
exit $status
