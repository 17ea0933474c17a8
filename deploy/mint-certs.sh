#!/bin/sh
# The `certs` job of docker-compose.yml: a throwaway PKI for the demo topology.
# One CA per trust domain (example.org, and the federated partner.example), made once and
# kept in $CA_DIR; one X509-SVID per workload identity in $CERTS_DIR/<sidecar>/ (the folder
# each deploy/sidecars/<sidecar>.yaml names); one bundle file per trust domain in
# $CERTS_DIR/bundles/. Running it again re-issues every SVID from the same CAs, so running
# sidecars pick the new ones up by hot reload (certificate rotation).
#
# Environment (defaults are the paths inside the container):
#   SEGWARD    the segward binary          (segward)
#   CA_DIR     where the CAs live          (/ca)
#   CERTS_DIR  where SVIDs and bundles go  (/certs)
#   SVID_TTL   lifetime of each SVID       (7d)
# The SPIFFE IDs are those policies/fleet.yaml names; `certs issue` refuses an ID outside
# its CA's trust domain, hence the partner's own CA.
set -eu

SEGWARD="${SEGWARD:-segward}"
CA="${CA_DIR:-/ca}"
OUT="${CERTS_DIR:-/certs}"
TTL="${SVID_TTL:-7d}"

for td in example.org partner.example; do
    if [ ! -f "$CA/$td/ca.key" ]; then
        "$SEGWARD" certs init --trust-domain "$td" --out "$CA/$td"
    fi
done

"$SEGWARD" certs issue --ca "$CA/example.org" --ttl "$TTL" --spiffe-id spiffe://example.org/ns/prod/sa/frontend --out "$OUT/frontend"
"$SEGWARD" certs issue --ca "$CA/example.org" --ttl "$TTL" --spiffe-id spiffe://example.org/ns/prod/sa/payments --out "$OUT/payments"
"$SEGWARD" certs issue --ca "$CA/example.org" --ttl "$TTL" --spiffe-id spiffe://example.org/ns/prod/sa/ledger --out "$OUT/ledger"
"$SEGWARD" certs issue --ca "$CA/example.org" --ttl "$TTL" --spiffe-id spiffe://example.org/ns/staging/sa/ci-runner --out "$OUT/ci-runner"
"$SEGWARD" certs issue --ca "$CA/example.org" --ttl "$TTL" --spiffe-id spiffe://example.org/ns/prod/agent/copilot/read --out "$OUT/agent-read"
"$SEGWARD" certs issue --ca "$CA/example.org" --ttl "$TTL" --spiffe-id spiffe://example.org/ns/prod/agent/copilot/write --out "$OUT/agent-write"
"$SEGWARD" certs issue --ca "$CA/partner.example" --ttl "$TTL" --spiffe-id spiffe://partner.example/integrations/crm --out "$OUT/partner"

# Written beside, then renamed: a sidecar reloading meanwhile reads the old file or the new.
mkdir -p "$OUT/bundles"
for td in example.org partner.example; do
    cp "$CA/$td/bundle.pem" "$OUT/bundles/.$td.pem.tmp"
    mv -f "$OUT/bundles/.$td.pem.tmp" "$OUT/bundles/$td.pem"
done
echo "minted SVIDs and bundles into $OUT"
