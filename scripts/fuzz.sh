#!/usr/bin/env bash
# Builds and runs segward's fuzz targets (fuzz/, cargo-fuzz + libFuzzer), each for SECONDS.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 30 seconds, every target
#   scripts/fuzz.sh 1200 path_normalize       # the 20-minute run of one target
#
# Stable toolchain: cargo-fuzz's default build asks rustc for AddressSanitizer (`-Zsanitizer`,
# nightly only). This script passes `--sanitizer none`, which cargo-fuzz documents as working
# on stable ("`none` disables sanitizer checks and can work on stable as long as no other
# nightly-only options are enabled", cargo-fuzz `--help`, rust-fuzz/cargo-fuzz#440): the
# SanitizerCoverage instrumentation that guides libFuzzer is an ordinary `-C` flag and stays.
# What is lost is ASan's memory checks, which matter for `unsafe` code; segward forbids
# `unsafe_code`, so a finding here is a panic (a failed assertion, an index out of range, an
# overflow: the build keeps debug assertions on), a timeout or an out-of-memory.
#
# Seeds: fuzz/seeds/TARGET (checked in; the SVIDs are the leaves src/identity/svid/tests.rs
# mints, rewritten by its ignored `write_fuzz_seeds` test). The growing corpus lives in
# target/fuzz/corpus/TARGET, crashes in target/fuzz/artifacts/TARGET. A crash fails the
# script: reproduce it with `cargo fuzz run -s none --fuzz-dir fuzz TARGET FILE`, fix it,
# and add the input to the unit tests of the code it broke.
# The last line per target ("<target>: N runs, cov X, ft Y, corpus Z, crashes 0") is the
# figure the README and SECURITY.md quote.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked)" >&2
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

fuzz=(cargo fuzz)
opts=(--sanitizer none --fuzz-dir fuzz --target-dir target/fuzz/build)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz)
fi

echo "building the fuzz targets (release, debug assertions, SanitizerCoverage)" >&2
"${fuzz[@]}" build "${opts[@]}"

status=0
for target in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$target
  artifacts=target/fuzz/artifacts/$target
  log=target/fuzz/logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "==> $target for ${seconds}s" >&2
  # -timeout: one input taking over 10 s is a finding (a parser's quadratic blow-up).
  if ! "${fuzz[@]}" run "${opts[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    status=1
    echo "$target: FAILED (crash, timeout or OOM); the input is in $artifacts, the log in $log:" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  done_line=$(grep -E '^#[0-9]+.*(DONE|pulse)' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$done_line")
  echo "$target: ${runs:-?} runs in ${seconds}s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, crashes 0"
done
exit "$status"
