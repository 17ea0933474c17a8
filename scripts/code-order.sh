#!/usr/bin/env bash
# Regenerates scripts/link/hot-functions.txt: the functions a running sidecar touches, which
# the release link places together at the front of .text (scripts/link/cc-ordered.sh;
# docs/performance.md, "Code laid out by use").
#
# Why: the kernel maps the 64 KiB around every code page a process touches (fault-around), so
# with the touched functions spread over the binary, ~80 % of a 9 MB .text was resident in an
# idle sidecar that touches ~3 MB of it.
#
# How: the release artifact, built with each function on its own page, is copied to a
# disk-backed file and evicted from the page cache, the disk's readahead is set to 0
# (restored on exit), then one sidecar runs a bounded scenario on 127.0.0.1: start-up with
# the shipped policy and 3 s idle (first snapshot), then mTLS requests in (allowed and
# denied), a request out through its outbound listener to its own inbound, the admin
# endpoints, a SIGHUP reload and a folder-watch reload (second snapshot). With nothing of the
# binary cached and no readahead, a page is resident only if the sidecar touched it;
# /proc/PID/pagemap gives those pages, `nm` the functions on them (scripts/link/touched.py).
# The list holds demangled names without their hash, start-up and idle first, so it survives
# rebuilds; names that no longer exist are simply not ordered.
#
#   sudo scripts/code-order.sh            # needs root: readahead, page cache, pagemap
#
# Every process it starts is stopped by PID; its scratch folder is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (block-device readahead, page cache, pagemap)" >&2; exit 2; }

# The probe binary: the release artifact with every function aligned to its own 4 KiB page,
# so that a touched page names one function, not its neighbours (its own target folder: the
# flag rebuilds everything).
artifact=$(RUSTFLAGS="${RUSTFLAGS:-} -C llvm-args=-align-all-functions=12" \
  CARGO_TARGET_DIR="$PWD/target/code-order-build" scripts/build-release.sh)
W=$(mktemp -d "$PWD/target/code-order.XXXXXX") # on the disk, not a tmpfs: evictable
pids=()
ra_file=""
ra_saved=""
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "$ra_file" ] && echo "$ra_saved" >"$ra_file"
  rm -rf "$W"
}
trap cleanup EXIT

binary=$W/segward
cp "$artifact" "$binary"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- identities and config
"$binary" certs init --trust-domain example.org --out "$W/ca" >/dev/null
for who in payments frontend; do
  "$binary" certs issue --ca "$W/ca" --spiffe-id "spiffe://example.org/ns/prod/sa/$who" \
    --out "$W/$who" >/dev/null
done
mkdir "$W/policy"
cp policies/*.yaml "$W/policy/"
backend=$(port) inbound=$(port) outbound=$(port) admin=$(port)
cat >"$W/config.yaml" <<EOF
identity:
  cert: $W/payments/svid.pem
  key: $W/payments/svid.key
  bundles: { example.org: $W/payments/bundle.pem }
policy: $W/policy
inbound: { listen: 127.0.0.1:$inbound, upstream: 127.0.0.1:$backend }
outbound:
  listen: 127.0.0.1:$outbound
  destinations:
    payments:
      address: 127.0.0.1:$inbound
      spiffe_id: spiffe://example.org/ns/prod/sa/payments
admin: { listen: 127.0.0.1:$admin }
EOF
python3 -m http.server --bind 127.0.0.1 "$backend" --directory "$W" >/dev/null 2>&1 &
pids+=($!)

# ---------------------------------------------------------------- nothing cached, no readahead
dev=$(findmnt -no SOURCE --target "$W" | sed 's|^/dev/||; s|[0-9]*$||')
ra_file=/sys/block/$dev/queue/read_ahead_kb
[ -w "$ra_file" ] || { echo "cannot set $ra_file" >&2; ra_file=""; exit 1; }
ra_saved=$(cat "$ra_file")
echo 0 >"$ra_file"
python3 - "$binary" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
EOF

# ---------------------------------------------------------------- the scenario
"$binary" run --config "$W/config.yaml" 2>"$W/segward.log" &
sidecar=$!
pids+=("$sidecar")
for _ in $(seq 200); do
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" | grep -qx 200 && break
  sleep 0.05
done
sleep 3
python3 scripts/link/touched.py "$sidecar" "$binary" >"$W/idle.txt"
send_in() { curl -s -o /dev/null -k --cert "$W/frontend/svid.pem" --key "$W/frontend/svid.key" "$@" || true; }
for _ in 1 2 3; do
  send_in "https://127.0.0.1:$inbound/v1/charges"                    # allowed
  send_in -X POST --data x "https://127.0.0.1:$inbound/v1/charges/1" # allowed, a body
  send_in "https://127.0.0.1:$inbound/admin/users"                   # denied
  send_in --http1.1 "https://127.0.0.1:$inbound/v1/refunds"          # denied, HTTP/1.1
  curl -s -o /dev/null -H 'Host: payments' "http://127.0.0.1:$outbound/v1/charges" || true
  for path in healthz readyz metrics policy; do
    curl -s -o /dev/null "http://127.0.0.1:$admin/$path" || true
  done
done
kill -HUP "$sidecar"
sleep 1
echo "# touched" >>"$W/policy/fleet.yaml" # the folder watch's reload
sleep 2
send_in "https://127.0.0.1:$inbound/v1/charges"

python3 scripts/link/touched.py "$sidecar" "$binary" >"$W/all.txt"

# ---------------------------------------------------------------- the list
# What start-up and an idle sidecar touch first, then what requests and reloads add: an idle
# sidecar maps the fewest windows, a busy one the next few. Each part in address order.
python3 - "$W/idle.txt" "$W/all.txt" >scripts/link/hot-functions.txt <<'EOF'
import sys
idle = [line.rstrip("\n").split(" ", 1)[1] for line in open(sys.argv[1])]
busy = [line.rstrip("\n").split(" ", 1)[1] for line in open(sys.argv[2])]
print("# Functions a running sidecar touches: scripts/code-order.sh wrote it, scripts/link/cc-ordered.sh")
print("# puts them first in .text. Start-up and idle first, then requests and reloads; demangled, no hashes.")
seen = set()
for name in idle + busy:
    if name not in seen:
        seen.add(name)
        print(name)
print(f"{len(seen)} functions ({len(set(idle))} at start-up and idle)", file=sys.stderr)
EOF
