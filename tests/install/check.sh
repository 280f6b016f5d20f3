#!/usr/bin/env bash
# Installs lamina into a temporary prefix, then builds a consumer with find_package(lamina)
# and another with pkg-config, and runs both.
set -euo pipefail
src="$1" build="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/install" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
export LD_LIBRARY_PATH="$work/prefix/lib:$work/prefix/lib64:$work/prefix/lib/x86_64-linux-gnu"
"$work/cmake/consumer_cmake"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$work/prefix/lib/x86_64-linux-gnu/pkgconfig:$work/prefix/lib64/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 "$src/tests/install/consumer.c" -o "$work/consumer_pc" $(pkg-config --cflags --libs --static lamina)
"$work/consumer_pc"
