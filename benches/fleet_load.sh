#!/usr/bin/env bash
# One sidecar on the bench fleet (docs/performance.md, "Fleet-scale policy"): the release
# artifact, one inbound listener, the whole fleet of benches/fleet (10k segments, 50k rules,
# 7.3 MB of YAML) as its policy. Prints one line per figure:
#   ready_ms        start to the first /readyz 200
#   rss_start_kib   VmRSS once ready
#   reload i ...    after each of RELOADS reloads: its wall time, the CPU (utime+stime from
#                   /proc/PID/stat) it cost, VmRSS after it
#   summary         RSS after the first and the last reload, their ratio, median CPU per reload
#
#   benches/fleet_load.sh                 # 50 reloads
#   RELOADS=12 benches/fleet_load.sh
#   BINARY=target/x/release/segward benches/fleet_load.sh   # skip the release build
#   POLICY_DIR=DIR benches/fleet_load.sh  # another policy folder instead of the whole fleet
#
# Each reload changes the policy (a small second file, `zz-bump.yaml`, names a new rule, so
# every reload publishes a new version and the old one must be freed) and sends SIGHUP; the
# reload is done when /policy shows the new version. The folder watch sees the same write and
# re-reads the files, finds the hash it just built and stops there; the CPU of each reload is
# measured after that, so it includes it. Bounded: each wait gives up after TIMEOUT seconds
# (default 60). Every process it starts is stopped by PID; its scratch folder is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
RELOADS=${RELOADS:-50}
TIMEOUT=${TIMEOUT:-60}

host=$(rustc -vV | sed -n 's/^host: //p')
binary=${BINARY:-$(scripts/build-release.sh)}
W=$(mktemp -d /tmp/fleet_load.XXXXXX)
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$W"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the policy
mkdir -p "$W/policy"
if [ -n "${POLICY_DIR:-}" ]; then
  find "$POLICY_DIR" -maxdepth 1 \( -name "*.yaml" -o -name "*.yaml.gz" \) -exec cp {} "$W/policy/" \;
else
  flags=""; case "$host" in *-linux-gnu*) flags="-C target-feature=+crt-static" ;; esac
  # Same target and flags as the release build, so that the shared dependencies are reused.
  writer=$(RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo bench --locked --target "$host" \
    --bench fleet_write --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
  [ -x "$writer" ] || { echo "fleet_write was not built" >&2; exit 1; }
  "$writer" "$W/policy" >&2
fi

# ---------------------------------------------------------------- identity and config
"$binary" certs init --trust-domain fleet.org --out "$W/ca" >/dev/null
"$binary" certs issue --ca "$W/ca" --spiffe-id spiffe://fleet.org/ns/ns-2/sa/svc-2 \
  --out "$W/svid" >/dev/null
admin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin="http://127.0.0.1:$admin_port"
cat >"$W/config.yaml" <<EOF
identity:
  cert: $W/svid/svid.pem
  key: $W/svid/svid.key
  bundles: { fleet.org: $W/svid/bundle.pem }
policy: $W/policy
inbound: { listen: 127.0.0.1:0, upstream: 127.0.0.1:9 }
admin: { listen: 127.0.0.1:$admin_port }
EOF

# ---------------------------------------------------------------- helpers
now_ms() { date +%s%3N; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$PID/status"; }
# utime + stime in clock ticks (fields 14 and 15; the command name is in parentheses).
cpu_ticks() { sed 's/^.*) //' "/proc/$PID/stat" | awk '{print $12 + $13}'; }
ticks_per_s=$(getconf CLK_TCK)
version() { curl -s --max-time 2 "$admin/policy" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'; }
# Waits until `cmd` prints something other than `$2`; fails after TIMEOUT seconds.
wait_change() {
  local deadline=$(($(now_ms) + TIMEOUT * 1000)) got
  while :; do
    kill -0 "$PID" 2>/dev/null || { echo "segward exited" >&2; exit 1; }
    got=$($1)
    [ -n "$got" ] && [ "$got" != "$2" ] && { echo "$got"; return; }
    [ "$(now_ms)" -lt "$deadline" ] || { echo "timed out waiting for $1" >&2; exit 1; }
    sleep 0.02
  done
}
ready() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$admin/readyz" | grep -x 200 || true; }

# ---------------------------------------------------------------- start
start=$(now_ms)
"$binary" run --config "$W/config.yaml" 2>"$W/segward.log" &
PID=$!
wait_change ready "" >/dev/null
echo "ready_ms $(($(now_ms) - start))"
sleep 1
echo "rss_start_kib $(rss_kib)"

# ---------------------------------------------------------------- reloads
current=$(version)
cpus=()
for i in $(seq "$RELOADS"); do
  before=$(cpu_ticks)
  t0=$(now_ms)
  printf 'rules:\n  - name: bump-%s\n    from: ["*"]\n    to: ["*"]\n    paths: ["/bump/%s"]\n' \
    "$i" "$i" >"$W/policy/.zz-bump.tmp"
  mv "$W/policy/.zz-bump.tmp" "$W/policy/zz-bump.yaml"
  kill -HUP "$PID"
  current=$(wait_change version "$current")
  t1=$(now_ms)
  sleep 1 # the debounced folder event (200 ms) re-reads the texts, finds nothing new, frees them
  cpu_ms=$((($(cpu_ticks) - before) * 1000 / ticks_per_s))
  cpus+=("$cpu_ms")
  rss=$(rss_kib)
  [ "$i" = 1 ] && first=$rss
  echo "reload $i wall_ms=$((t1 - t0)) cpu_ms=$cpu_ms rss_kib=$rss"
done
median=$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
awk -v f="$first" -v l="$rss" -v n="$RELOADS" -v m="$median" 'BEGIN {
  printf "summary reloads=%d rss_first_kib=%d rss_last_kib=%d ratio=%.2f cpu_ms_median=%d\n", n, f, l, l / f, m }'
