#!/usr/bin/env bash
# The L4 (TCP) pair benchmark (ISSUE 16 part 5, docs/l4.md): segward's pair in TCP mode
# beside HAProxy's pair in `mode tcp`, and a direct client -> backend baseline, in one run.
#
#   benches/pair_tcp.sh                                  # threads 1 and 2, 3 reps
#   PT_THREADS_LIST=2 PT_REPS=5 PT_STREAM_MIB=2048 benches/pair_tcp.sh
#
# Chains (the load client is benches/tcp_load.rs, built with `cargo bench --no-run`; it is
# also the backend: sink or echo, 1 thread each):
#   direct   client -> backend
#   segward  client -> outbound (plain, `local:` port) -mTLS-> inbound (protocol: tcp) -> backend
#   haproxy  client -> haproxy (plain in, `ssl crt verify required` out) -mTLS-> haproxy
#            (bind ssl, client cert verify required, tcp-request session checks the client
#            cert's fingerprint) -> backend
# Measurements, per thread budget (segward limits.worker_threads = HAProxy nbthread):
#   stream  one connection, PT_STREAM_MIB MiB up, then the backend's byte count back:
#           MB/s (10^6 bytes) and the CPU seconds (utime+stime from /proc/PID/stat) of the
#           two proxies per GB (10^9 bytes)
#   conns   PT_CONN_CLIENTS concurrent clients for PT_CONN_SECS: connect, 64 bytes echoed,
#           close — every client connection is a new mTLS handshake between the pair with
#           no resumption on either side: segward's server keeps no session state and sends
#           no tickets (src/tls/config.rs); HAProxy gets `no-tls-tickets` on both sides,
#           `tune.ssl.cachesize 0` and `no-ssl-reuse` on its server line. The sanity step
#           checks it (openssl s_client -reconnect must never report "Reused").
# Same certificates for both (`segward certs`, ECDSA P-256), TLS 1.3 only, the same cipher
# (TLS_AES_128_GCM_SHA256: rustls's choice; HAProxy is told to use it too).
# segward runs as shipped: the binary of scripts/build-release.sh, decision log on (stderr
# to a scratch file removed afterwards), admin on. Loopback only; runs are interleaved chain
# by chain, the order rotated every rep; every process started is stopped by PID.
# Results: $PT_OUT_DIR (default ./peerbench-runs)/tcp-<timestamp>/{raw.tsv,summary.md}.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
root=$PWD

THREADS_LIST=${PT_THREADS_LIST:-"1 2"}
REPS=${PT_REPS:-3}
STREAM_MIB=${PT_STREAM_MIB:-1024}
CONN_CLIENTS=${PT_CONN_CLIENTS:-16}
CONN_SECS=${PT_CONN_SECS:-5}
CONN_BYTES=${PT_CONN_BYTES:-64}
CHAINS=${PT_CHAINS:-"direct segward haproxy"}
(( STREAM_MIB >= 1024 && STREAM_MIB <= 8192 )) || { echo "PT_STREAM_MIB: 1024..8192" >&2; exit 2; }
(( CONN_SECS <= 10 && CONN_CLIENTS <= 256 && REPS <= 10 )) || { echo "bounds: PT_CONN_SECS<=10 PT_CONN_CLIENTS<=256 PT_REPS<=10" >&2; exit 2; }

# Ports apart from benches/peers/run.sh's (18xxx), so both can run on one machine.
P_BACKEND=28080
P_SW_OUT=28401 P_SW_IN=28443 P_SW_ADM_IN=28491 P_SW_ADM_OUT=28492
P_HA_OUT=28501 P_HA_IN=28543
ID_FRONTEND=spiffe://example.org/ns/prod/sa/frontend
ID_PAYMENTS=spiffe://example.org/ns/prod/sa/payments
declare -A OUTPORT=([direct]=$P_BACKEND [segward]=$P_SW_OUT [haproxy]=$P_HA_OUT)
declare -A INPORT=([segward]=$P_SW_IN [haproxy]=$P_HA_IN)
declare -A OUTPID=() INPID=()

log() { printf '[pair_tcp %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v haproxy >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -y -qq install haproxy >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1; apt-get -y -qq install haproxy >/dev/null; }
fi

# ---------------------------------------------------------------- builds
binary=$(scripts/build-release.sh)
host=$(rustc -vV | sed -n 's/^host: //p')
flags=""; case "$host" in *-linux-gnu*) flags="-C target-feature=+crt-static" ;; esac
# Same target and flags as the release build, so that the shared dependencies are reused.
load=$(RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo bench --locked --target "$host" --bench tcp_load --no-run 2>&1 |
  sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$load" ] || { echo "tcp_load was not built" >&2; exit 1; }

# ---------------------------------------------------------------- processes
PIDS=()
W=$(mktemp -d /tmp/pair_tcp.XXXXXX)
mkdir -p "$W/logs"
stop_pid() {     # TERM, wait up to 5 s, KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? i
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[$i]}"; done
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start_bg() {     # start_bg NAME CMD... ; sets LASTPID (the command itself: exec, no wrapper)
  local name=$1; shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  LASTPID=$!
  PIDS+=("$LASTPID")
}
wait_port() {
  local i
  for (( i=0; i<200; i++ )); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
cpu_ticks() {    # utime+stime of a process (all its threads), clock ticks
  local f; f=$(cat /proc/"$1"/stat); f=${f##*) }
  set -- $f
  echo $(( ${12} + ${13} ))
}
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- PKI (segward certs)
C=$W/certs
"$binary" certs init --trust-domain example.org --out "$C/ca" >/dev/null
"$binary" certs issue --ca "$C/ca" --spiffe-id "$ID_PAYMENTS" --dns payments.local --out "$C/payments" >/dev/null
"$binary" certs issue --ca "$C/ca" --spiffe-id "$ID_FRONTEND" --out "$C/frontend" >/dev/null
"$binary" certs issue --ca "$C/ca" --spiffe-id spiffe://example.org/ns/prod/sa/intruder --out "$C/intruder" >/dev/null
for n in payments frontend intruder; do
  cat "$C/$n/svid.pem" "$C/$n/svid.key" >"$C/$n/haproxy.pem"   # HAProxy wants cert + key
  chmod 600 "$C/$n/haproxy.pem"
done
BUNDLE=$C/ca/bundle.pem
# HAProxy 2.6 cannot read a URI SAN: its inbound authorizes the frontend's certificate by
# fingerprint (the one check it can make that names the peer).
FP=$(openssl x509 -in "$C/frontend/svid.pem" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')

# ---------------------------------------------------------------- configs
write_segward() { # THREADS
  local D=$W/segward-$1; mkdir -p "$D/policy"
  cat >"$D/policy/bench.yaml" <<EOF
segments:
  frontend: { identities: ["$ID_FRONTEND"] }
  payments: { identities: ["$ID_PAYMENTS"] }
rules:
  - name: frontend-reaches-payments
    from: [frontend]
    to: [payments]
EOF
  local common="policy: $D/policy
mode: enforce
limits:
  worker_threads: $1"
  cat >"$D/inbound.yaml" <<EOF
identity:
  cert: $C/payments/svid.pem
  key: $C/payments/svid.key
  bundles:
    example.org: $BUNDLE
inbound:
  - { listen: 127.0.0.1:$P_SW_IN, upstream: 127.0.0.1:$P_BACKEND, protocol: tcp }
admin:
  listen: 127.0.0.1:$P_SW_ADM_IN
$common
EOF
  cat >"$D/outbound.yaml" <<EOF
identity:
  cert: $C/frontend/svid.pem
  key: $C/frontend/svid.key
  bundles:
    example.org: $BUNDLE
outbound:
  destinations:
    payments:
      address: 127.0.0.1:$P_SW_IN
      spiffe_id: $ID_PAYMENTS
      protocol: tcp
      local: 127.0.0.1:$P_SW_OUT
admin:
  listen: 127.0.0.1:$P_SW_ADM_OUT
$common
EOF
}

write_haproxy() { # THREADS
  local D=$W/haproxy-$1; mkdir -p "$D"
  local G="global
  nbthread $1
  maxconn 4096
  # no resumption anywhere: no tickets, no server-side session cache (and no-ssl-reuse below)
  ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets
  ssl-default-server-options ssl-min-ver TLSv1.3 no-tls-tickets
  # the cipher rustls picks between segward's pair (OpenSSL's default would be AES-256-GCM)
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
  ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256
  tune.ssl.cachesize 0
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s"
  cat >"$D/inbound.cfg" <<EOF
$G
frontend inbound
  bind 127.0.0.1:$P_HA_IN ssl crt $C/payments/haproxy.pem ca-file $BUNDLE verify required
  tcp-request session reject unless { ssl_c_sha1,hex -m str $FP }
  default_backend app
backend app
  server app 127.0.0.1:$P_BACKEND
EOF
  cat >"$D/outbound.cfg" <<EOF
$G
frontend outbound
  bind 127.0.0.1:$P_HA_OUT
  default_backend payments
backend payments
  # verifyhost checks the DNS SAN; HAProxy 2.6 cannot pin the server's URI SAN.
  server payments 127.0.0.1:$P_HA_IN ssl verify required ca-file $BUNDLE crt $C/frontend/haproxy.pem sni str(payments.local) verifyhost payments.local no-ssl-reuse
EOF
}

start_chain() {   # CHAIN THREADS
  local ch=$1 t=$2
  case $ch in
    direct) return 0 ;;
    segward)
      write_segward "$t"
      start_bg "segward-$t-in" "$binary" run --config "$W/segward-$t/inbound.yaml"; INPID[$ch]=$LASTPID
      start_bg "segward-$t-out" "$binary" run --config "$W/segward-$t/outbound.yaml"; OUTPID[$ch]=$LASTPID ;;
    haproxy)
      write_haproxy "$t"
      start_bg "haproxy-$t-in" haproxy -db -f "$W/haproxy-$t/inbound.cfg"; INPID[$ch]=$LASTPID
      start_bg "haproxy-$t-out" haproxy -db -f "$W/haproxy-$t/outbound.cfg"; OUTPID[$ch]=$LASTPID ;;
  esac
  wait_port "${INPORT[$ch]}" && wait_port "${OUTPORT[$ch]}"
}
stop_chain() {
  [ "$1" = direct ] && return 0
  stop_pid "${OUTPID[$1]}"; stop_pid "${INPID[$1]}"
  rm -f "$W"/logs/"$1"-*.log   # segward's decision lines: ~2 per connection per sidecar
}

# ---------------------------------------------------------------- sanity
tls_try() {       # PORT CERT|none -> "ok" if a 64-byte echo comes back over mTLS
  local args=() out
  [ "$2" != none ] && args=(-cert "$C/$2/svid.pem" -key "$C/$2/svid.key")
  out=$( { printf 'Ehello-through-the-inbound'; sleep 1; } |
    timeout 5 openssl s_client -quiet -connect 127.0.0.1:"$1" -servername payments.local \
      -CAfile "$BUNDLE" "${args[@]}" 2>/dev/null || true)
  [ "$out" = hello-through-the-inbound ] && echo ok || echo refused
}
reused() {        # PORT -> how many of 5 reconnects resumed a session
  { sleep 2; } | timeout 10 openssl s_client -reconnect -connect 127.0.0.1:"$1" -servername payments.local \
    -CAfile "$BUNDLE" -cert "$C/frontend/svid.pem" -key "$C/frontend/svid.key" 2>/dev/null |
    grep -c '^Reused' || true
}
sanity() {        # CHAIN THREADS -> 0 if all checks pass
  local ch=$1 ok=0 got
  check() { printf '%s\t%s\t%s\twant %s\tgot %s\n' "$2" "$ch" "$3" "$4" "$5" >>"$OUT/sanity.tsv"; [ "$4" = "$5" ] || ok=1; }
  got=$("$load" conns 127.0.0.1:"${OUTPORT[$ch]}" 1 0.2 64 2>&1 | sed -n 's/.*err=\([0-9]*\).*/\1/p')
  check x "$2" "echo through the first hop: errors" 0 "${got:-?}"
  [ "$ch" = direct ] && return $ok
  check x "$2" "inbound, frontend cert" ok "$(tls_try "${INPORT[$ch]}" frontend)"
  check x "$2" "inbound, intruder cert" refused "$(tls_try "${INPORT[$ch]}" intruder)"
  check x "$2" "inbound, no client cert" refused "$(tls_try "${INPORT[$ch]}" none)"
  check x "$2" "inbound, sessions resumed of 5 reconnects" 0 "$(reused "${INPORT[$ch]}")"
  got=$(timeout 5 openssl s_client -connect 127.0.0.1:"${INPORT[$ch]}" -servername payments.local -CAfile "$BUNDLE" \
        -cert "$C/frontend/svid.pem" -key "$C/frontend/svid.key" </dev/null 2>/dev/null |
        sed -n 's/^New, \(.*\)$/\1/p' | head -1)
  echo "tls $ch t=$2 (openssl -> inbound): $got" >>"$OUT/machine.txt"
  return $ok
}

# ---------------------------------------------------------------- measurements
measure() {       # KIND THREADS CHAIN REP
  local kind=$1 t=$2 ch=$3 rep=$4 port=${OUTPORT[$3]} bo=0 bi=0 ao=0 ai=0 line
  if [ "$ch" != direct ]; then bo=$(cpu_ticks "${OUTPID[$ch]}"); bi=$(cpu_ticks "${INPID[$ch]}"); fi
  if [ "$kind" = stream ]; then
    line=$(timeout 120 "$load" stream 127.0.0.1:"$port" $(( STREAM_MIB * 1048576 )) 2>&1 || true)
  else
    line=$(timeout 30 "$load" conns 127.0.0.1:"$port" "$CONN_CLIENTS" "$CONN_SECS" "$CONN_BYTES" 2>&1 || true)
  fi
  if [ "$ch" != direct ]; then ao=$(cpu_ticks "${OUTPID[$ch]}"); ai=$(cpu_ticks "${INPID[$ch]}"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$t" "$ch" "$rep" $((ao-bo)) $((ai-bi)) "$line" >>"$OUT/raw.tsv"
  log "  t=$t $kind $ch rep=$rep: $line cpu_ticks out=$((ao-bo)) in=$((ai-bi))"
}
rotate() { local n=$(( $1 - 1 )); shift; local a=("$@") i; for (( i=0; i<${#a[@]}; i++ )); do printf '%s ' "${a[$(( (i+n) % ${#a[@]} ))]}"; done; }

# ---------------------------------------------------------------- main
OUT=${PT_OUT_DIR:-$root/peerbench-runs}/tcp-$(date +%Y%m%dT%H%M%S); mkdir -p "$OUT"
: >"$OUT/raw.tsv"; : >"$OUT/sanity.tsv"
{
  echo "date: $(date -Is)"
  echo "host: $(nproc) cpu ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "haproxy: $(haproxy -v | head -1); $(haproxy -vv 2>/dev/null | grep -m1 'Running on OpenSSL')"
  echo "segward: $binary ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ', dirty'))"
  echo "settings: threads='$THREADS_LIST' reps=$REPS stream=${STREAM_MIB}MiB conns: clients=$CONN_CLIENTS secs=$CONN_SECS bytes=$CONN_BYTES chains='$CHAINS' clk_tck=$HZ"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

start_bg backend "$load" backend 127.0.0.1:$P_BACKEND
wait_port $P_BACKEND || { log "backend did not start"; exit 1; }

for t in $THREADS_LIST; do
  log "=== $t thread(s) per proxy ==="
  live=""
  for ch in $CHAINS; do
    if ! start_chain "$ch" "$t"; then log "$ch did not start"; tail -n 5 "$W"/logs/"$ch"-*.log >&2 || true; stop_chain "$ch"; continue; fi
    if sanity "$ch" "$t"; then live="$live $ch"; else
      log "$ch FAILED its sanity checks, not measured:"; grep -P "\t$ch\t" "$OUT/sanity.tsv" >&2; stop_chain "$ch"
    fi
  done
  for ch in $live; do "$load" conns 127.0.0.1:"${OUTPORT[$ch]}" 4 1 64 >/dev/null 2>&1 || true; done   # warm-up
  for rep in $(seq "$REPS"); do
    for ch in $(rotate "$rep" $live); do measure stream "$t" "$ch" "$rep"; sleep 0.5; done
    for ch in $(rotate "$rep" $live); do measure conns "$t" "$ch" "$rep"; sleep 1; done
  done
  for ch in $live; do stop_chain "$ch"; done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 - "$OUT" "$HZ" <<'EOF' | tee "$OUT/summary.md"
import sys, statistics as st, collections
out, hz = sys.argv[1], int(sys.argv[2])
rows = collections.defaultdict(list)   # (kind, t, chain) -> [dict]
for line in open(f"{out}/raw.tsv"):
    kind, t, ch, rep, co, ci, rest = line.rstrip("\n").split("\t", 6)
    kv = dict(x.split("=", 1) for x in rest.split() if "=" in x)
    kv["cpu"] = (int(co) + int(ci)) / hz
    rows[(kind, t, ch)].append(kv)
def med(kind, t, ch, f):
    v = [f(r) for r in rows.get((kind, t, ch), []) if "err" not in r or r.get("ok")]
    v = [x for x in v if x is not None]
    return st.median(v) if v else None
def fmt(x, d=1):
    return "-" if x is None else f"{x:,.{d}f}"
ts = sorted({k[1] for k in rows})
for t in ts:
    n = len(rows.get(("stream", t, "segward"), []))
    print(f"\n### {t} thread(s) per proxy (median of {n} reps)\n")
    print("| what | segward pair | HAProxy pair | ratio | target | met? | direct |")
    print("|---|---|---|---|---|---|---|")
    metrics = [
        ("one stream, MB/s", "stream", lambda r: float(r["mbps"]) if "mbps" in r else None, ">= 1.00", lambda q: q >= 1.0, 0),
        ("CPU s per GB (both proxies)", "stream", lambda r: r["cpu"] / (int(r["bytes"]) / 1e9) if "bytes" in r else None, "<= 0.80", lambda q: q <= 0.8, 2),
        ("new conns/s", "conns", lambda r: float(r["rate"]) if int(r.get("ok", 0)) else None, ">= 2.00", lambda q: q >= 2.0, 0),
        ("CPU ms per 1k conns (both proxies)", "conns", lambda r: r["cpu"] * 1e6 / int(r["ok"]) if int(r.get("ok", 0)) else None, "-", None, 0),
        ("conn p99 latency, µs", "conns", lambda r: float(r["p99_us"]) if int(r.get("ok", 0)) else None, "-", None, 0),
    ]
    for name, kind, f, target, ok, d in metrics:
        s, h, direct = med(kind, t, "segward", f), med(kind, t, "haproxy", f), med(kind, t, "direct", f)
        q = s / h if s is not None and h else None
        met = "-" if ok is None or q is None else ("yes" if ok(q) else "**no**")
        dd = "-" if name.startswith("CPU") else fmt(direct, d)
        print(f"| {name} | {fmt(s, d)} | {fmt(h, d)} | {fmt(q, 2)} | {target} | {met} | {dd} |")
    errs = {ch: sum(int(r.get("err", 0)) for r in rows.get(("conns", t, ch), [])) for ch in ("segward", "haproxy", "direct")}
    print(f"\nconnection errors over all reps: {errs}")
EOF
cat "$OUT/sanity.tsv" >&2
log "raw data: $OUT"
