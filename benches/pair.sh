#!/usr/bin/env bash
# The sidecar-pair load benchmark (ISSUE 8, docs/performance.md): segward's pair measured in the
# same run as the HAProxy and nginx pairs and a direct client -> backend baseline, by the
# peer benchmark (benches/peers/run.sh, vendored unchanged but for this path: wrk keep-alive at 16 and 64 connections,
# a new-connection mTLS run against each inbound, CPU per request, p50/p99, idle and peak
# RSS; loopback only; every process it starts is stopped by PID).
#
#   benches/pair.sh                                   # defaults of run.sh (threads 1 and 2, 3 reps)
#   PB_THREADS_LIST=2 PB_CONNS=64 PB_REPS=5 benches/pair.sh   # the figures in README
#
# segward runs as shipped: the binary of scripts/build-release.sh, decision log on (every
# request), metrics and admin on. Its decision lines go to a scratch file that is removed
# afterwards (they would otherwise fill the disk: ~400 bytes per request per sidecar).
# segward's loops follow the variant's thread budget (TOKIO_WORKER_THREADS, which run.sh sets
# to PB_THREADS, as HAProxy gets nbthread and nginx worker_processes).
# p99.9: run.sh reports wrk's standard percentiles; a `wrk` wrapper first on PATH adds
# benches/p999.lua (a done() hook: no Lua per request) so that every wrk run also prints its
# 99.9th percentile, and benches/p999.py tabulates it per chain after the run.
# Any PB_* knob of run.sh passes through; results go to $PB_OUT_DIR (default ./peerbench-runs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bench=${PEERBENCH:-$root/benches/peers/run.sh}
[ -f "$bench" ] || { echo "peer benchmark not found at $bench (set PEERBENCH)" >&2; exit 2; }

# The release artifact, as the Dockerfile builds it (static-pie on Linux).
binary=$(scripts/build-release.sh)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
export PROXY_UNDER_TEST_CMD="$binary run --config \"\$PB_CONFIG\" 2>>$logs/\$PB_ROLE.log"

# The wrapper must find the real wrk: install it now (run.sh would see the wrapper instead).
if ! command -v wrk >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -y -qq install wrk >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1; apt-get -y -qq install wrk >/dev/null; }
fi
real_wrk=$(command -v wrk)
mkdir "$logs/bin"
printf '#!/bin/sh\nexec %q -s %q "$@"\n' "$real_wrk" "$root/benches/p999.lua" >"$logs/bin/wrk"
chmod +x "$logs/bin/wrk"

export PB_OUT_DIR=${PB_OUT_DIR:-$root/peerbench-runs}
mkdir -p "$PB_OUT_DIR"
runs() { find "$PB_OUT_DIR" -mindepth 1 -maxdepth 1 -type d | sort; }
before=$(runs)
PATH="$logs/bin:$PATH" bash "$bench"
run_dir=$(comm -13 <(echo "$before") <(runs) | tail -1)
[ -n "$run_dir" ] || { echo "no new run in $PB_OUT_DIR" >&2; exit 1; }
echo
python3 "$root/benches/p999.py" "$run_dir" | tee "$run_dir/p999.txt"
