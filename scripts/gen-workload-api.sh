#!/usr/bin/env bash
# Regenerates src/workload_api/pb.rs (prost messages, tonic client and server) from
# proto/workload.proto. Needs protoc (Debian: apt-get install protobuf-compiler), which is why
# the output is checked in: building segward itself needs neither protoc nor this tool.
# `--check` regenerates into a temporary folder and fails if the checked-in file differs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --quiet --manifest-path tools/workload-api-codegen/Cargo.toml \
  --target-dir target/workload-api-codegen -- "$out" proto
rustfmt --edition 2024 "$out/_.rs"
target=src/workload_api/pb.rs
if [ "${1:-}" = "--check" ]; then
  diff -u "$target" "$out/_.rs" && echo "$target is up to date"
else
  mkdir -p "$(dirname "$target")"
  cp "$out/_.rs" "$target"
  echo "wrote $target"
fi
