#!/bin/sh
# Prints the demo's identity Secrets as YAML, for `kubectl apply -f -`: it runs
# deploy/mint-certs.sh (the docker-compose `certs` job) and wraps what it wrote, one Secret
# `segward-svid-<sidecar>` (svid.pem, svid.key) per sidecar and `segward-bundles` (one
# <trust domain>.pem each), in namespace segward-demo.
#
#   deploy/kubernetes/overlays/demo/secrets.sh | kubectl apply -f -
#
# Environment: SEGWARD (the segward binary, default `segward` on PATH); CA_DIR (where the
# demo CAs are kept, default ./demo-ca: keep it to re-issue SVIDs from the same CAs, which
# running sidecars pick up live; delete it to start over). The CA keys never leave CA_DIR.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
NAMESPACE="${NAMESPACE:-segward-demo}"
export CA_DIR="${CA_DIR:-$PWD/demo-ca}"
CERTS_DIR=$(mktemp -d)
export CERTS_DIR
trap 'rm -rf "$CERTS_DIR"' EXIT

sh "$repo/deploy/mint-certs.sh" >&2

# secret NAME FILE...: one Secret whose keys are the files' base names.
secret() {
    name=$1
    shift
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n' \
        "$name" "$NAMESPACE"
    printf '  labels:\n    app.kubernetes.io/part-of: segward\ntype: Opaque\ndata:\n'
    for file in "$@"; do
        printf '  %s: %s\n' "$(basename "$file")" "$(base64 -w0 <"$file")"
    done
}

for dir in "$CERTS_DIR"/*/; do
    sidecar=$(basename "$dir")
    [ "$sidecar" = bundles ] && continue
    secret "segward-svid-$sidecar" "$dir/svid.pem" "$dir/svid.key"
done
secret segward-bundles "$CERTS_DIR"/bundles/*.pem
