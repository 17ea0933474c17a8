#!/usr/bin/env bash
# Validates deploy/kubernetes/ against the Kubernetes API schemas (docs/spire.md, README
# "Kubernetes"), as .ci/run does: every manifest file on its own, then every kustomization
# rendered with `kubectl kustomize`, each resource checked by kubernetes-validate in strict
# mode (unknown fields are errors) for the oldest Kubernetes with native sidecars on by
# default (1.29) and the newest the validator ships (1.37). A resource whose schema the
# validator lacks fails too, rather than passing unchecked.
#
# The tools (requirements pinned by hash in scripts/validate-k8s.requirements.txt) go into
# a venv under target/, made once per requirements file. No cluster is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSIONS=(1.29.0 1.37.0)
requirements=scripts/validate-k8s.requirements.txt
venv=target/k8s-validate
out=target/k8s-rendered

# --- tools -------------------------------------------------------------------------------
stamp=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
    --only-binary=:all: -r "$requirements"
  echo "$stamp" >"$venv/.requirements"
fi
kubectl="$venv/bin/kubectl"
validate=("$venv/bin/kubernetes-validate" --strict)
for version in "${KUBERNETES_VERSIONS[@]}"; do validate+=(-k "$version"); done
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)," \
  "kubectl $("$kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')," \
  "schemas for Kubernetes ${KUBERNETES_VERSIONS[*]}"

# check FILE...: validate; any ERROR, WARN or FATAL line (or a non-zero exit) fails.
report=$(mktemp)
trap 'rm -f "$report"' EXIT
check() {
  local rc=0
  "${validate[@]}" "$@" >"$report" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || grep -qvE '^INFO ' "$report"; then
    grep -vE '^INFO ' "$report" >&2 || true
    echo "validate-k8s: $* did not validate" >&2
    exit 1
  fi
  passed=$((passed + $(grep -c '^INFO ' "$report")))
}
passed=0

# --- every manifest file as written (kustomization inputs that are whole objects) ---------
mapfile -t files < <(grep -rlE --include='*.yaml' '^kind: ' deploy/kubernetes |
  grep -v '/kustomization\.yaml$' | sort)
for file in "${files[@]}"; do check "$file"; done
echo "files: ${#files[@]} manifest files, $passed resource checks passed"

# --- every kustomization, rendered ---------------------------------------------------------
# Every kustomization.yaml but Components (rendered inside the overlays that use them): one
# without a `kind:` line is a Kustomization too, as `policy slice --per` writes them.
rm -rf "$out"
mkdir -p "$out"
mapfile -t roots < <(find deploy/kubernetes -name kustomization.yaml -print0 |
  xargs -0 grep -LE '^kind: Component$' | xargs -n1 dirname | sort)
before=$passed
for root in "${roots[@]}"; do
  rendered="$out/$(echo "${root#deploy/kubernetes/}" | tr / -).yaml"
  "$kubectl" kustomize "$root" >"$rendered"
  check "$rendered"
  echo "rendered: $root -> $rendered ($(grep -c '^kind: ' "$rendered") resources)"
done
echo "rendered: ${#roots[@]} kustomizations, $((passed - before)) resource checks passed"
echo "validate-k8s: all $passed resource checks passed (strict, Kubernetes ${KUBERNETES_VERSIONS[*]})"
