#!/usr/bin/env bash
# The whole test suite: a Debug build, then the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer. Warnings are errors in both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs="$(nproc)"
for variant in debug asan; do
  sanitize=OFF
  [ "$variant" = asan ] && sanitize=ON
  echo "== $variant build"
  cmake -S . -B "build/$variant" -DCMAKE_BUILD_TYPE=Debug -DLAMINA_SANITIZE="$sanitize" >/dev/null
  cmake --build "build/$variant" -j"$jobs" >/dev/null
  echo "== $variant tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "build/$variant" --output-on-failure -j"$jobs"
done
