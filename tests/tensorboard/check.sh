#!/usr/bin/env bash
# Proof by the real thing: trains a model with the TensorBoard callback (tb_run), then reads
# its logs with the pip package tensorboard (tools/tensorboard/check_logs.py).
# Usage: check.sh SOURCE_DIR BINARY_DIR TB_RUN
# The venv lives in BINARY_DIR/tensorboard-venv and is reused while it imports tensorboard.
set -euo pipefail
src="$1" bin="$2" tb_run="$3"
venv="$bin/tensorboard-venv"
if ! "$venv/bin/python" -c "import tensorboard" 2>/dev/null; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    echo "check.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check tensorboard
fi
run="$bin/tensorboard-run"
rm -rf "$run"
mkdir -p "$run"
OMP_NUM_THREADS=1 "$tb_run" "$run/logs" "$run/expected.json"
"$venv/bin/python" "$src/tools/tensorboard/check_logs.py" "$run/logs" "$run/expected.json"
