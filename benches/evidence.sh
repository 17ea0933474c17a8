#!/usr/bin/env bash
# policy replay / learn / unused on a large decision log (docs/performance.md, "Least
# privilege from evidence"): the release artifact on LINES decision-log lines (default 10M,
# ~3.3 GB) over DISTINCT keys (default 50k: 50 sources x 20 destinations x 50 paths, methods
# and decisions mixed), written once by a generator. Prints one line per command:
#   COMMAND  lines  wall_s  cpu_s  lines_per_cpu_s  peak_rss_kib
# (from /usr/bin/time: wall, user+system CPU, peak RSS). Each command runs on one core (the
# readers and the analysis are single-threaded), so lines per CPU second is the rate of one
# core, whatever else the machine is running; wall time is what an operator waits.
#
#   benches/evidence.sh
#   LINES=1000000 benches/evidence.sh
#   BINARY=target/x/release/segward benches/evidence.sh   # skip the release build
#   WORK=/tmp/ev benches/evidence.sh      # keep (and reuse) the generated log in /tmp/ev
#
# Without WORK the scratch folder (the log, the policy, the outputs) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${LINES:-10000000}

binary=${BINARY:-$(scripts/build-release.sh)}
if [ -n "${WORK:-}" ]; then
  W=$WORK
  mkdir -p "$W"
else
  W=$(mktemp -d /tmp/evidence_bench.XXXXXX)
  trap 'rm -rf "$W"' EXIT
fi

[ -s "$W/fleet.log" ] || python3 - "$W" "$LINES" <<'PY'
import sys
out, lines = sys.argv[1], int(sys.argv[2])
sources = [f"spiffe://example.org/ns/prod/sa/client-{i}" for i in range(50)]
dests = [f"spiffe://example.org/ns/prod/sa/service-{i}" for i in range(20)]
paths = [f"/v1/items/{i}" for i in range(40)] + [f"/v1/things/{i}/parts" for i in range(10)]
with open(f"{out}/policy.yaml", "w") as p:
    p.write("segments:\n")
    for i in range(50):
        p.write(f'  client-{i}: {{ identities: ["{sources[i]}"] }}\n')
    for i in range(20):
        p.write(f'  service-{i}: {{ identities: ["{dests[i]}"] }}\n')
    p.write("rules:\n")
    for i in range(20):
        clients = ", ".join(f"client-{c}" for c in range(50) if c % 20 != i % 7)
        p.write(f'  - {{ name: to-service-{i}, from: [{clients}], to: [service-{i}], '
                f'methods: [GET, POST, DELETE], paths: ["/v1/items/*", "/v1/things/*/parts", "/admin/**"] }}\n')
# Every (source, destination, path) key is one line template; lines cycle through them.
templates = []
for s_i, s in enumerate(sources):
    for d_i, d in enumerate(dests):
        allowed = s_i % 20 != d_i % 7
        for p_i, path in enumerate(paths):
            method = "POST" if p_i % 10 == 0 else "GET"
            decision, rule, reason = (("allow", f',"rule":"to-service-{d_i}"', "allow-rule")
                                      if allowed else ("deny", "", "default-deny"))
            templates.append(
                '{"time":"2026-12-01T10:%02d:%02d.%06dZ","request_id":"%016x","direction":"inbound",'
                f'"source_id":"{s}","destination_id":"{d}","method":"{method}","path":"{path}",'
                f'"decision":"{decision}"{rule},"reason":"{reason}",'
                '"policy_version":"sha256:9b53e305db5dd378","status":200,"duration_ms":0.412}\n')
n = len(templates)
with open(f"{out}/fleet.log", "w", buffering=1 << 22) as f:
    chunk = []
    for i in range(lines):
        chunk.append(templates[(i * 7919) % n] % ((i // 60) % 60, i % 60, i % 1000000, i))
        if len(chunk) == 10000:
            f.write("".join(chunk))
            chunk.clear()
    f.write("".join(chunk))
print(f"generated {lines} lines over {n} distinct keys", file=sys.stderr)
PY

ls -l "$W/fleet.log" >&2
measure() {
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$W/time" "$binary" "$@" >"$W/out" 2>"$W/err" || true
  read -r wall user sys rss <"$W/time"
  awk -v n="$name" -v l="$LINES" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" \
    'BEGIN { c = u + s; printf "%-7s lines=%d wall_s=%.2f cpu_s=%.2f lines_per_cpu_s=%.0f peak_rss_kib=%d\n", n, l, w, c, l / c, r }'
}
measure replay policy replay "$W/policy.yaml" --log "$W/fleet.log" --json
measure learn policy learn --log "$W/fleet.log" --json
measure unused policy unused "$W/policy.yaml" --log "$W/fleet.log" --json
