#!/usr/bin/env bash
# Every chapter on the GPU host (quick profile) on JAX and PyTorch at once: the host has no TensorFlow, so the
# TensorFlow column comes from this machine. One process per chapter and backend (14), sharing the GPU (no memory
# preallocation) and the 16 cores, each executing the chapter's .md source with benchmarks/backends.py against the
# checked outputs in $REFERENCE (`python benchmarks/backends.py reference DIR`, from the committed notebooks).
# $DATA_DIRS: folders whose sub-folders are data sets; they are linked into one DECONVLAB_DATA folder.
# Writes $OUT/backends_gpu.json (backend -> chapter -> result, plus the host) and $OUT/gpu_chapters_logs.tar.gz.
set -uo pipefail
out="${OUT:?set OUT to the results folder}"
reference="${REFERENCE:?set REFERENCE to the folder of reference notebooks}"
work=/tmp/gpu-chapters
rm -rf "$work"  # a machine kept warm between calls still holds the previous call's logs, which the merge would read
mkdir -p "$work/data" "$work/logs" "$work/runs"
for dir in ${DATA_DIRS:?set DATA_DIRS}; do
  for set in "$dir"/*/; do
    set="${set%/}"
    case "$(basename "$set")" in whl | reference) continue ;; esac
    ln -sfn "$PWD/$set" "$work/data/$(basename "$set")"
  done
done
python3 -m ipykernel install --user --name python3 > /dev/null 2>&1
for backend in ${BACKENDS:-jax torch}; do
  for source in notebooks/[0-9][0-9]_*.md; do
    name=$(basename "$source" .md)
    OMP_NUM_THREADS=2 XLA_PYTHON_CLIENT_PREALLOCATE=false DECONVLAB_PROFILE=quick DECONVLAB_DATA="$work/data" \
      KERAS_BACKEND="$backend" timeout "${CHAPTER_TIMEOUT:-480}" \
      python3 benchmarks/backends.py run "$work/runs/$backend-$name" "$name" --reference "$reference" \
      > "$work/logs/$backend-$name.log" 2>&1 &
    sleep 2  # 14 kernels starting in the same second outlast nbclient's 60 s startup wait (torch's chapter 6 once did)
  done
done
wait
python3 - "$work" "$out/backends_gpu.json" <<'PY'
import json, subprocess, sys
from pathlib import Path
work, target = Path(sys.argv[1]), Path(sys.argv[2])
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except OSError:
    gpu = "none"
merged = {"host": {"gpu": gpu}}
for log in sorted((work / "logs").glob("*.log")):
    backend, name = log.stem.split("-", 1)
    found = work / "runs" / log.stem / "results.json"
    result = json.loads(found.read_text())[name] if found.exists() else {
        "ok": False, "errors": ["no result: killed at the time limit"], "seconds": None}
    merged.setdefault(backend, {})[name] = result
    print(f"{backend} {name}: {'pass' if result['ok'] else 'FAIL'} {result['seconds']} s", *result["errors"][:2])
target.write_text(json.dumps(merged, indent=1))
PY
tar -czf "$out/gpu_chapters_logs.tar.gz" -C "$work" logs
