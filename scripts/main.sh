#!/usr/bin/env bash
# The main job: build lamina (Release) and train the multi-output Fashion-MNIST model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DLAMINA_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
exec ./build/release/fashion_mnist_multi_output "$@"
