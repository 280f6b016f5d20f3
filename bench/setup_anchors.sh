#!/usr/bin/env bash
# Creates the venv for the reference (anchor) benchmarks bench/torch_bench.py and
# bench/keras_bench.py; idempotent: a venv that already has the pinned versions is left alone.
#
#   bash bench/setup_anchors.sh   # /opt/bench-venv: torch (PyPI wheel), keras, tensorflow-cpu, jax[cpu]
#
# keras_bench.py uses the tensorflow backend by default and can run on jax or torch too;
# it hides the backends it does not use, so one venv serves all three.
# PyTorch is the plain PyPI `torch` wheel (pip install torch); on x86-64 Linux that is the
# CUDA-enabled build, which runs on the CPU here (MKL + oneDNN). These pip packages are for
# the reference tools only; lamina itself needs none of them.
# Env overrides: BENCH_VENV, PYTHON (the interpreter that makes the venv).
set -euo pipefail

PYTHON=${PYTHON:-python3}
VENV=${BENCH_VENV:-/opt/bench-venv}

TORCH=2.15.0 KERAS=3.15.1 JAX=0.10.2 NUMPY=2.4.6 TF=2.21.0

# ensure_venv DIR CHECK_PY PIP_ARGS...: makes DIR unless it exists, then installs PIP_ARGS
# unless CHECK_PY (a python snippet that exits 0 when all is in place) succeeds there.
ensure_venv() {
    local dir=$1 check=$2
    shift 2
    if [ ! -x "$dir/bin/python" ]; then
        echo "setup_anchors: creating $dir" >&2
        "$PYTHON" -m venv "$dir"
    fi
    if "$dir/bin/python" -c "$check" 2>/dev/null; then
        echo "setup_anchors: $dir is up to date" >&2
        return
    fi
    echo "setup_anchors: pip install $* into $dir" >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    "$dir/bin/python" -c "$check"
}

ensure_venv "$VENV" "
import importlib.metadata as m
want = {'torch': '$TORCH', 'keras': '$KERAS', 'tensorflow-cpu': '$TF', 'jax': '$JAX',
        'jaxlib': '$JAX', 'numpy': '$NUMPY'}
bad = [k for k, v in want.items() if m.version(k).split('+')[0] != v]
raise SystemExit('missing: ' + ' '.join(bad) if bad else 0)" \
    "torch==$TORCH" "keras==$KERAS" "tensorflow-cpu==$TF" "jax[cpu]==$JAX" "numpy==$NUMPY"

echo "setup_anchors: torch, keras, tensorflow-cpu and jax in $VENV (PyTorch from PyPI: pip install torch==$TORCH)"
