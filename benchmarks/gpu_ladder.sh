#!/usr/bin/env bash
# The ablation ladder on one GPU: one benchmarks/ladder.py process per rung, side by side, each doing its seeds in
# sequence (its own JAX compilation cache, XLA_PYTHON_CLIENT_MEM_FRACTION each); run JSONs and logs end up in ONE
# tar.gz under OUTDIR (the device tool returns only a few files per call), refreshed every SNAPSHOT seconds while
# the runs go on, so a call stopped at its time limit still returns the runs finished by then.
#
# Usage: benchmarks/gpu_ladder.sh OUTDIR [more ladder.py arguments]
# Environment: RUNGS (a,b,c,d,e,f: one process per rung), JOBS (instead of RUNGS: one process per line,
# "label|ladder.py arguments", e.g. "overfit-b-small|--rungs b --train-images 2,392 --steps 1000"; they come
# after the common arguments, so they override them), SEEDS (0,1,2), DEADLINE (250: ladder.py --deadline-s, seconds since each
# process started), HARD_STOP (290: timeout for each process), MEM_FRACTION (0.85 / processes), PYTHON (python3), WORK (/tmp/ladder),
# SNAPSHOT (15).
set -u
out=${1:?usage: benchmarks/gpu_ladder.sh OUTDIR [ladder.py arguments]}
shift
work=${WORK:-/tmp/ladder}
rungs=${RUNGS:-a,b,c,d,e,f}
mkdir -p "$out" "$work/runs" "$work/logs"
jobs=${JOBS:-$(for r in ${rungs//,/ }; do echo "$r|--rungs $r"; done)}
n=$(echo "$jobs" | grep -c .)
start=$(date +%s)
snapshot() { tar -czf "$out/$1" -C "$work" runs logs 2>/dev/null && mv -f "$out/$1" "$out/ladder.tar.gz"; }
(while sleep "${SNAPSHOT:-15}"; do snapshot snapshot.tmp; done) &
snapper=$!
pids=()
while IFS='|' read -r label job; do
  [ -n "$label" ] || continue
  # shellcheck disable=SC2086  # a job's arguments are a word list
  XLA_PYTHON_CLIENT_MEM_FRACTION=${MEM_FRACTION:-$(python3 -c "print(round(0.85 / $n, 3))")} PYTHONUNBUFFERED=1 \
    timeout "${HARD_STOP:-290}" "${PYTHON:-python3}" benchmarks/ladder.py --seeds "${SEEDS:-0,1,2}" \
    --out "$work/runs" --shared "$n" --compile-cache "$work/cache-$label" --deadline-s "${DEADLINE:-250}" "$@" \
    $job >"$work/logs/$label.log" 2>&1 &
  pids+=("$!")
done <<<"$jobs"
for p in "${pids[@]}"; do
  wait "$p"
  echo "pid $p exit $?" >>"$work/logs/exit.txt"
done
echo "wall $(($(date +%s) - start)) s for $n processes" >>"$work/logs/exit.txt"
kill "$snapper" 2>/dev/null
wait "$snapper" 2>/dev/null
command -v nvidia-smi >/dev/null && nvidia-smi >"$work/logs/nvidia-smi.txt" 2>&1
snapshot final.tmp
rm -f "$out/snapshot.tmp"
cat "$work/logs/exit.txt"
grep -h RESULT "$work"/logs/*.log
