#!/usr/bin/env bash
# The release artifact: segward built with the release profile for this machine's target,
# linked statically (static-pie) against glibc on Linux, and its path printed on stdout.
# The Dockerfile and benches/pair.sh use it; `cargo build --release` (dynamic) stays the
# developer build.
#
#   scripts/build-release.sh            # -> /path/to/target/<triple>/release/segward
#
# Why static: idle RSS is mostly mapped code pages, and a dynamic binary maps libc, libm,
# libgcc_s and ld.so on top of its own (~1.1 MiB more per sidecar, measured with
# benches/pair.sh). glibc's own "files" and "dns" name lookups are built into its static
# library, so upstream and destination host names resolve as before (/etc/hosts, then DNS);
# other NSS modules (mdns, systemd-resolved's nss-resolve) are not loaded.
# Extra arguments go to cargo (e.g. --features).
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
flags=""
case "$host" in
  # The linker wrapper lays out .text by use (scripts/link/cc-ordered.sh): an idle sidecar maps
  # ~3 MB of code fewer than with the functions it touches spread over the binary.
  *-linux-gnu*) flags="-C target-feature=+crt-static -C linker=$PWD/scripts/link/cc-ordered.sh" ;;
esac
# cargo does not see the linker's own input: a newer function order relinks (the binary only).
previous=target/$host/release/segward
if [ -e "$previous" ] && [ scripts/link/hot-functions.txt -nt "$previous" ]; then
  touch src/main.rs
fi
# --target keeps these flags off build scripts and proc-macros (which cannot be static).
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --locked --target "$host" "$@" >&2
# Where cargo put it (CARGO_TARGET_DIR and cargo config may move the target folder).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
echo "${target_dir:-$PWD/target}/$host/release/segward"
