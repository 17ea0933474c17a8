#!/usr/bin/env bash
# The README's Docker walk-through, run for real (ISSUE 20): the compose topology in
# containers on their own network, every call of the README with its status and the rule
# that decided it (from the decision log), then a live revocation, a certificate rotation, a
# drain on stop, and a clean `down -v`. Run by .ci/run when a Docker engine answers.
#
#   tests/compose.sh
#
# It runs in a copy of the compose files (a temporary folder), so editing the policy there
# never touches the repository's policies/, under its own project name, so it cannot meet a
# demo someone has running. Images: debian:bookworm-slim from scripts/docker-base.sh when the
# engine lacks it, segward:local from the binary of scripts/build-release.sh
# (SEGWARD_IMAGE_TARGET=host-binary: no Rust image can be pulled here), the workload image
# built from deploy/workload. The only network targets are the project's own containers and
# the admin ports they publish on 127.0.0.1. Everything it starts is removed on exit,
# whatever happens; `down -v` is checked to leave no container, network or volume behind.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { printf '%s\n' "compose: $*"; }
fail() { printf '%s\n' "compose: FAIL: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
    say "SKIPPED: no Docker engine answers (docker info failed)"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    dc=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    dc=(docker-compose) # Compose v1 (Debian's package) takes the same commands
else
    say "SKIPPED: neither 'docker compose' nor 'docker-compose' is installed"
    exit 0
fi

export COMPOSE_PROJECT_NAME="segward-test-$$"
export SEGWARD_IMAGE_TARGET=host-binary
project=$COMPOSE_PROJECT_NAME
work=$(mktemp -d)
cleanup() {
    (cd "$work" && "${dc[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1) || true
    rm -rf "$work"
}
trap cleanup EXIT

say "images: base, segward (host binary), workload"
scripts/docker-base.sh
binary=$(scripts/build-release.sh)
cp -r docker-compose.yml .env Dockerfile .dockerignore deploy policies "$work/"
install -D -m 0755 "$binary" "$work/target/docker/segward"
cd "$work"

# --- up ------------------------------------------------------------------------------------
sidecars=(frontend-sidecar payments-sidecar ledger-sidecar ci-runner-sidecar
    agent-read-sidecar agent-write-sidecar partner-sidecar)
up_started=$(date +%s%N)
"${dc[@]}" up -d --build >"$work/up.log" 2>&1 || { cat "$work/up.log"; fail "compose up"; }
say "up -d --build: $(( ($(date +%s%N) - up_started) / 1000000 )) ms"

cid() { "${dc[@]}" ps -q "$1"; }
# The readiness of payments-sidecar, from its container's start: the start-to-ready figure.
ready_ms=""
for _ in $(seq 1 300); do
    if curl -sf -o /dev/null http://127.0.0.1:19902/readyz; then
        started=$(docker inspect -f '{{.State.StartedAt}}' "$(cid payments-sidecar)")
        ready_ms=$(( ($(date +%s%N) - $(date -d "$started" +%s%N)) / 1000000 ))
        break
    fi
    sleep 0.1
done
[ -n "$ready_ms" ] || fail "payments-sidecar never answered /readyz 200"
say "payments-sidecar: container start to /readyz 200 within ${ready_ms} ms (polled every 100 ms)"

for _ in $(seq 1 90); do
    unhealthy=0
    for s in "${sidecars[@]}"; do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$s")")
        [ "$status" = healthy ] || unhealthy=$((unhealthy + 1))
    done
    [ "$unhealthy" -eq 0 ] && break
    sleep 1
done
[ "$unhealthy" -eq 0 ] || { "${dc[@]}" ps; fail "$unhealthy sidecars not healthy after 90 s"; }
certs_exit=$(docker inspect -f '{{.State.ExitCode}}' "$(cid certs)")
[ "$certs_exit" = 0 ] || fail "the certs job exited $certs_exit"
say "every sidecar healthy; certs exited 0"

# --- the README's calls ----------------------------------------------------------------------
n=0
# call EXPECTED_STATUS SERVICE CURL_ARGS...: runs curl in SERVICE with a fresh x-request-id
# (RID), keeps the body in BODY; fails unless the status is EXPECTED_STATUS.
call() {
    local expected=$1 service=$2
    shift 2
    n=$((n + 1))
    RID="compose-test-$n"
    local out
    out=$("${dc[@]}" exec -T "$service" curl -s -H "x-request-id: $RID" -w '\n%{http_code}' "$@")
    BODY=${out%$'\n'*}
    local status=${out##*$'\n'}
    [ "$status" = "$expected" ] || fail "$service curl $*: status $status, expected $expected: $BODY"
}

# decided SIDECAR DECISION RULE: the decision line of request RID in SIDECAR's log decided
# DECISION by RULE ("" when no rule decided; `reason:WHY` to check the reason instead).
decided() {
    local sidecar=$1 decision=$2 rule=$3 line=""
    for _ in $(seq 1 50); do
        line=$("${dc[@]}" logs --no-color "$sidecar" 2>/dev/null |
            grep -o '{"time".*' | grep -F "\"request_id\":\"$RID\"" | head -1 || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    [ -n "$line" ] || fail "no decision line for $RID in $sidecar"
    python3 - "$line" "$decision" "$rule" <<'PY' || fail "$sidecar, $RID: $line"
import json, sys
line, decision, rule = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert line["decision"] == decision, line
if rule.startswith("reason:"):
    assert line["reason"] == rule[len("reason:"):] and "rule" not in line, line
else:
    assert line.get("rule", "") == rule, line  # "": no rule decided (default deny)
PY
    LINE=$line
}

frontend=spiffe://example.org/ns/prod/sa/frontend
proxy=(-x http://127.0.0.1:15001)

# allowed (frontend-creates-charges): the echo shows x-spiffe-id = frontend's ID
call 200 frontend "${proxy[@]}" http://payments/v1/charges
decided frontend-sidecar allow frontend-creates-charges
decided payments-sidecar allow frontend-creates-charges
grep -qF "\"x-spiffe-id\": \"$frontend\"" <<<"$BODY" || fail "echo: $BODY"
# The inbound sidecar saw the frontend container's own address on the compose network.
peer=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["peer_addr"])' "$LINE")
frontend_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$(cid frontend)")
[ "${peer%:*}" = "${frontend_ip%% *}" ] || fail "payments-sidecar saw $peer, frontend is $frontend_ip"
case $peer in 127.*) fail "the peer came over loopback: $peer" ;; esac
say "payments-sidecar saw the frontend at $peer (container address, not loopback)"
call 200 frontend "${proxy[@]}" -d '{}' http://payments/v1/charges
decided payments-sidecar allow frontend-creates-charges

# a forged identity header is replaced: the echo still shows frontend's real ID
call 200 frontend "${proxy[@]}" -H 'x-spiffe-id: spiffe://example.org/ns/prod/sa/payments' \
    http://payments/v1/charges
grep -qF "\"x-spiffe-id\": \"$frontend\"" <<<"$BODY" || fail "forged x-spiffe-id reached payments: $BODY"

# 403: no-admin-api, then default-deny (frontend has no business with the ledger)
call 403 frontend "${proxy[@]}" http://payments/admin/keys
decided frontend-sidecar deny no-admin-api
call 403 frontend "${proxy[@]}" http://ledger/v1/entries
decided frontend-sidecar deny "reason:default-deny"
# 403: staging-never-reaches-prod
call 403 ci-runner "${proxy[@]}" http://payments/v1/charges
decided ci-runner-sidecar deny staging-never-reaches-prod

# the agent: read identity on :15001, write identity on :15002
call 200 agent "${proxy[@]}" http://payments/v1/charges/ch_1
decided agent-read-sidecar allow agents-read-charges-and-entries
call 403 agent "${proxy[@]}" -d '{}' http://payments/v1/refunds
decided agent-read-sidecar deny agent-read-is-read-only
call 200 agent -x http://127.0.0.1:15002 -d '{}' http://payments/v1/refunds
decided agent-write-sidecar allow agents-issue-refunds
call 403 agent --path-as-is "${proxy[@]}" 'http://payments/v1/charges/%2e%2e/%2e%2e/admin/keys'
decided agent-read-sidecar deny no-admin-api

# the federated partner: allowed (partner-sends-webhooks), then 403
call 200 partner "${proxy[@]}" -d '{}' http://payments/v1/webhooks/partner
decided payments-sidecar allow partner-sends-webhooks
call 403 partner "${proxy[@]}" http://ledger/v1/entries
decided partner-sidecar deny third-parties-never-touch-the-ledger

# payments writes the ledger through its sidecar's outbound side (payments-writes-ledger)
call 200 payments "${proxy[@]}" -d '{}' http://ledger/v1/entries
decided ledger-sidecar allow payments-writes-ledger
say "every README call answered as documented, decided by the documented rule"

# --- a revocation, live ------------------------------------------------------------------------
entry="  - spiffe://example.org/ns/prod/sa/legacy-batch"
grep -qxF "$entry" policies/fleet.yaml || fail "fleet.yaml no longer revokes legacy-batch"
python3 - policies/fleet.yaml "$entry" <<'PY'
import sys
path, entry = sys.argv[1], sys.argv[2]
text = open(path).read()
open(path, "w").write(text.replace(entry + "\n", entry + "\n  - spiffe://partner.example/integrations/crm\n", 1))
PY
edited=$(date +%s%N)
revoked=""
for _ in $(seq 1 30); do
    n=$((n + 1))
    RID="compose-test-$n"
    status=$("${dc[@]}" exec -T partner curl -s -o /dev/null -w '%{http_code}' -H "x-request-id: $RID" \
        "${proxy[@]}" -d '{}' http://payments/v1/webhooks/partner)
    if [ "$status" = 403 ]; then
        revoked=$(( ($(date +%s%N) - edited) / 1000000 ))
        break
    fi
    sleep 0.1
done
[ -n "$revoked" ] || fail "the partner was not refused within 3 s of the policy edit"
[ "$revoked" -le 3000 ] || fail "the revocation took ${revoked} ms (more than 3 s)"
decided partner-sidecar deny reason:revoked
say "revocation in force ${revoked} ms after the edit on the host"

# --- rotation ---------------------------------------------------------------------------------
# The certificate payments-sidecar presents, as a client on the compose network sees it.
presented() {
    "${dc[@]}" exec -T frontend python3 -c \
        'import ssl; print(ssl.get_server_certificate(("payments", 8443)))'
}
before=$(presented)
life_before=$(docker inspect -f '{{.RestartCount}} {{.State.StartedAt}}' "$(cid payments-sidecar)")
"${dc[@]}" run --rm certs >"$work/certs.log" 2>&1 || { cat "$work/certs.log"; fail "certs re-run"; }
rotated=""
for _ in $(seq 1 150); do
    after=$(presented)
    if [ "$after" != "$before" ]; then rotated=yes; break; fi
    sleep 0.1
done
[ -n "$rotated" ] || fail "payments-sidecar still presents its old SVID 15 s after the re-issue"
life_after=$(docker inspect -f '{{.RestartCount}} {{.State.StartedAt}}' "$(cid payments-sidecar)")
[ "$life_after" = "$life_before" ] || fail "payments-sidecar restarted: $life_before -> $life_after"
call 200 frontend "${proxy[@]}" http://payments/v1/charges
decided payments-sidecar allow frontend-creates-charges
say "re-issued SVIDs presented on new handshakes, same container life ($life_after), traffic on"

# --- figures -----------------------------------------------------------------------------------
image_size=$(docker image inspect -f '{{.Size}}' segward:local)
idle=$(docker stats --no-stream --format '{{.MemUsage}}' "$(cid ledger-sidecar)")
rss_kb=$(docker exec "$(cid ledger-sidecar)" cat /proc/1/status | awk '/^VmRSS/ {print $2}')
say "segward image $(( image_size / 1000000 )) MB; ledger-sidecar docker stats $idle, VmRSS ${rss_kb} kB"

# --- stop drains ------------------------------------------------------------------------------
"${dc[@]}" exec -T frontend curl -s -o /dev/null -w '%{http_code}' "${proxy[@]}" \
    'http://payments/v1/charges?sleep_ms=3000' >"$work/slow.status" 2>&1 &
slow=$!
# The request takes 3 s at the echo app; a second in, it is in flight through both sidecars.
sleep 1
stop_started=$(date +%s%N)
"${dc[@]}" stop >"$work/stop.log" 2>&1 || { cat "$work/stop.log"; fail "compose stop"; }
wait "$slow" || true
[ "$(cat "$work/slow.status")" = 200 ] || fail "the in-flight request did not complete: $(cat "$work/slow.status")"
for s in "${sidecars[@]}"; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$(cid "$s")")
    [ "$code" = 0 ] || fail "$s exited $code on stop"
done
say "stop: the slow in-flight request completed (200); every sidecar exited 0 ($(( ($(date +%s%N) - stop_started) / 1000000 )) ms)"

# --- down -v leaves nothing ------------------------------------------------------------------
"${dc[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 || { cat "$work/down.log"; fail "compose down"; }
label="label=com.docker.compose.project=$project"
left="$(docker ps -aq --filter "$label") $(docker network ls -q --filter "$label") $(docker volume ls -q --filter "$label")"
[ -z "${left// /}" ] || fail "down -v left behind: $left"
say "down -v: no container, network or volume of $project left"
say "PASS"
