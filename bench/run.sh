#!/usr/bin/env bash
# The benchmark: each model of bench/README.md trained and run by lamina, PyTorch and Keras
# on this machine, one process per model and framework, then one table (bench/report.py).
#
#   bash bench/run.sh [--threads 2] [--steps 20] [--warmup 5] [--rounds 3] [--models "A B C D E F F1024"]
#
# Writes bench/out/ (results.jsonl, peak.jsonl, machine.txt, table.md) and prints the table.
# Each round runs every model in the three frameworks one after the other, so that a slow
# spell of a shared machine hits all three alike; the table takes the median over rounds.
# In the first round lamina also runs with 1 thread and a second time with the given
# threads: the report checks that the trained weights are the same bits each time.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 steps=20 warmup=5 rounds=3 models="A B C D E F F1024"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2 ;;
    --steps) steps=$2 ;;
    --warmup) warmup=$2 ;;
    --rounds) rounds=$2 ;;
    --models) models=$2 ;;
    *) echo "usage: bash bench/run.sh [--threads N] [--steps N] [--warmup N] [--rounds N] [--models \"A B ...\"]" >&2; exit 2 ;;
  esac
  shift 2
done

bash scripts/deps.sh
bash bench/setup_anchors.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target lamina_bench sgemm_peak >/dev/null

out=bench/out
mkdir -p "$out"
: >"$out/results.jsonl"
: >"$out/peak.jsonl"
venv=${BENCH_VENV:-/opt/bench-venv}
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "lamina: $(git describe --always --dirty 2>/dev/null || echo unknown), gcc $(gcc -dumpfullversion), oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev)"
  "$venv/bin/python" -c 'import torch, keras, sys; print(f"python {sys.version.split()[0]}, torch {torch.__version__} (PyPI wheel), keras {keras.__version__}")'
} >"$out/machine.txt"
cat "$out/machine.txt"

for t in 1 "$threads"; do ./build/release/sgemm_peak --threads "$t" >>"$out/peak.jsonl"; done
common=(--steps "$steps" --warmup "$warmup")
# PyTorch's best setup here: glibc keeps freed memory instead of returning it to the system.
tunables=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
for round in $(seq "$rounds"); do
  for m in $models; do
    echo "== round $round, model $m" >&2
    ./build/release/lamina_bench --model "$m" "${common[@]}" --threads "$threads" >>"$out/results.jsonl"
    if [ "$round" = 1 ]; then
      ./build/release/lamina_bench --model "$m" "${common[@]}" --threads "$threads" | sed 's/"framework": "lamina"/"framework": "lamina-rerun"/' >>"$out/results.jsonl"
      ./build/release/lamina_bench --model "$m" "${common[@]}" --threads 1 | sed 's/"framework": "lamina"/"framework": "lamina-1thread"/' >>"$out/results.jsonl"
    fi
    GLIBC_TUNABLES=$tunables "$venv/bin/python" bench/torch_bench.py --model "$m" "${common[@]}" --threads "$threads" >>"$out/results.jsonl"
    "$venv/bin/python" bench/keras_bench.py --model "$m" "${common[@]}" --threads "$threads" >>"$out/results.jsonl"
  done
done
python3 bench/report.py "$out" | tee "$out/table.md"
