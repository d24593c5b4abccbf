#!/usr/bin/env bash
# Installs dependencies, builds pgshift with AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs every test (unit and integration,
# against throwaway PostgreSQL clusters the tests start themselves), then
# the fuzz targets for 20 s each.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build=${PGSHIFT_TEST_BUILD:-build-asan}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGSHIFT_SANITIZE=ON \
  -DPGSHIFT_BENCH=OFF >/dev/null
cmake --build "$build"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$build" && ctest --output-on-failure --timeout 1200)
# The fuzz targets, each for a bounded time (scripts/fuzz.sh runs them longer).
scripts/fuzz.sh "${PGSHIFT_FUZZ_SECONDS:-20}"
