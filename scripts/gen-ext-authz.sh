#!/usr/bin/env bash
# Regenerates src/ext_authz/pb.rs (prost messages, tonic client and server of Envoy's
# envoy.service.auth.v3.Authorization) from the vendored protos under proto/ (proto/UPSTREAM.md
# says where each tree comes from). Needs protoc and the well-known types (Debian:
# apt-get install protobuf-compiler libprotobuf-dev), which is why the output is checked in:
# building segward itself needs neither protoc nor this tool.
# `--check` regenerates into a temporary folder and fails if the checked-in file differs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler libprotobuf-dev" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --quiet --manifest-path tools/workload-api-codegen/Cargo.toml \
  --target-dir target/workload-api-codegen -- "$out" proto ext-authz
rustfmt --edition 2024 "$out/ext_authz.rs"
target=src/ext_authz/pb.rs
if [ "${1:-}" = "--check" ]; then
  diff -u "$target" "$out/ext_authz.rs" && echo "$target is up to date"
else
  mkdir -p "$(dirname "$target")"
  cp "$out/ext_authz.rs" "$target"
  echo "wrote $target"
fi
