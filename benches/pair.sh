#!/usr/bin/env bash
# The sidecar-pair load benchmark (ISSUE 8, PRODUCT.md §7): segward's pair measured in the
# same run as the HAProxy and nginx pairs and a direct client -> backend baseline, by the
# shared peer benchmark (../shared/bench/run.sh: wrk keep-alive at 16 and 64 connections,
# a new-connection mTLS run against each inbound, CPU per request, p50/p99, idle and peak
# RSS; loopback only; every process it starts is stopped by PID).
#
#   benches/pair.sh                                   # defaults of run.sh (threads 1 and 2, 3 reps)
#   PB_THREADS_LIST=2 PB_CONNS=64 PB_REPS=5 benches/pair.sh   # the figures in README
#
# segward runs as shipped: the binary of scripts/build-release.sh, decision log on (every
# request), metrics and admin on. Its decision lines go to a scratch file that is removed
# afterwards (they would otherwise fill the disk: ~400 bytes per request per sidecar).
# Any PB_* knob of run.sh passes through.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bench=${PEERBENCH:-$root/../shared/bench/run.sh}
[ -f "$bench" ] || { echo "peer benchmark not found at $bench (set PEERBENCH)" >&2; exit 2; }

# The release artifact, as the Dockerfile builds it (static-pie on Linux).
binary=$(scripts/build-release.sh)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
export PROXY_UNDER_TEST_CMD="$binary run --config \"\$PB_CONFIG\" 2>>$logs/\$PB_ROLE.log"
bash "$bench"
