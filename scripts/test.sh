#!/usr/bin/env bash
# The whole test suite, three times: a Debug build, an optimized build (whose warnings gcc
# finds only at -O2), and a Debug build under AddressSanitizer and UndefinedBehaviorSanitizer.
# Warnings are errors in all three.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs="$(nproc)"
for variant in debug optimized asan; do
  sanitize=OFF type=Debug
  [ "$variant" = asan ] && sanitize=ON
  [ "$variant" = optimized ] && type=Release
  echo "== $variant build"
  cmake -S . -B "build/$variant" -DCMAKE_BUILD_TYPE="$type" -DLAMINA_SANITIZE="$sanitize" >/dev/null
  cmake --build "build/$variant" -j"$jobs" >/dev/null
  echo "== $variant tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "build/$variant" --output-on-failure -j"$jobs"
done
