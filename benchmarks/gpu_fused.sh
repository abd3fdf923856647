#!/usr/bin/env bash
# Train several cards at once on one GPU with `python -m deconvlab.fused` (they share it): denoisers, or
# super-resolution with `--task sr --scale S` (data from DECONVLAB_DATA, e.g. the packs of benchmarks/pack_sr_data.py).
#   benchmarks/gpu_fused.sh "<fused args for job 1>" "<fused args for job 2>" ...
# JSON in a job must hold no spaces (each job is split on spaces).
# Each job gets --out $OUT/weights --shared <number of jobs>; its log goes to $OUT/fused-<id>.log.
# The GPU host's tree has no .git: pass the commit as DECONVLAB_COMMIT so the cards record it.
set -uo pipefail
set -f  # the jobs hold JSON with [ ] that must not glob
out="${OUT:?set OUT to the results folder}"
mkdir -p "$out/weights"
# a failure's whole traceback in the job's log, not the one line a reader gets: rerunning costs device time
export DECONVLAB_DEBUG="${DECONVLAB_DEBUG:-1}"
# each JAX process would otherwise reserve 75 % of the GPU's memory for itself
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-$(python3 -c "print(round(0.9 / $#, 3))")}"
pids=()
n=0
for job in "$@"; do
  n=$((n + 1))
  # shellcheck disable=SC2086  # each job is a list of arguments
  python3 -m deconvlab.fused --out "$out/weights" --shared $# $job > "$out/fused-$n.log" 2>&1 &
  pids+=($!)
done
set +f
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for log in "$out"/fused-*.log; do grep -v '^[IWE]0000\|absl' "$log" > "$log.tmp" && mv "$log.tmp" "$log"; done
grep -h '^RESULT' "$out"/fused-*.log
# the device tool returns a few files per call: one archive carries every card and log
tar -C "$out" -czf "$out/fused.tar.gz" weights $(cd "$out" && ls fused-*.log) && rm -r "$out/weights" "$out"/fused-*.log
exit $status
