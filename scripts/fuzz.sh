#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan and UBSan) in build-fuzz and
# runs each for SECONDS (default 60) from its seed corpus in
# tests/fuzz/corpus/<target>. New inputs go to a scratch copy, not the
# checked-in seeds. A crash stops with the target's report and its input
# (crash-* in the scratch directory): make it a unit test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${PGSHIFT_FUZZ_BUILD:-build-fuzz}
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPGSHIFT_FUZZ=ON -DPGSHIFT_BENCH=OFF >/dev/null
cmake --build "$build"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for target in frame_decoder messages startup sql_rewrite; do
  mkdir -p "$scratch/$target"
  cp tests/fuzz/corpus/$target/* "$scratch/$target/"
  echo "fuzz: $target for ${seconds}s"
  if ! "$build/tests/fuzz/${target}_fuzz" -max_total_time="$seconds" -max_len=4096 \
      -artifact_prefix="$scratch/$target-" -print_final_stats=1 "$scratch/$target" \
      >"$scratch/$target.log" 2>&1; then
    tail -60 "$scratch/$target.log"
    mkdir -p fuzz-crashes && cp "$scratch/$target-"* fuzz-crashes/ 2>/dev/null || true
    echo "fuzz: $target found a crash (its input is in fuzz-crashes/)" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$scratch/$target.log" | tail -1 || true
done
echo "fuzz: no crash"
