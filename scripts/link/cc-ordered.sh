#!/usr/bin/env bash
# The release artifact's linker (scripts/build-release.sh passes `-C linker=` this script): the
# system `cc`, as rustc would call it, plus lld's `--symbol-ordering-file`, so that the
# functions a running sidecar touches (hot-functions.txt, written by scripts/code-order.sh)
# sit together at the front of .text. The kernel maps the 64 KiB around each touched code
# page; with those functions spread over the binary most of it was resident
# (docs/performance.md, "Code laid out by use").
#
# The list holds demangled names without hashes; the mangled names of this build are looked
# up in the objects being linked (`nm`), so a rebuild or a new toolchain does not make it
# stale: a function renamed or gone is just not ordered. Only the order changes, never what
# is linked; if anything here fails, the link goes on without an order.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
order=""
lld=no
for arg in "$@"; do [ "$arg" = -fuse-ld=lld ] && lld=yes; done
if [ "$lld" = yes ] && command -v nm >/dev/null 2>&1 && [ -r "$here/hot-functions.txt" ]; then
  # The objects and Rust libraries on the command line (and in a response file, `@FILE`, one
  # argument a line).
  objects=()
  for arg in "$@"; do
    case "$arg" in
      @*) while IFS= read -r line; do
            case "$line" in *.o | *.rlib) objects+=("$line") ;; esac
          done <"${arg#@}" ;;
      *.o | *.rlib) objects+=("$arg") ;;
    esac
  done
  if [ ${#objects[@]} -gt 0 ]; then
    order=$(mktemp "${TMPDIR:-/tmp}/segward-order.XXXXXX")
    for object in "${objects[@]}"; do
      # The same symbols in the same order (-p), mangled and demangled, side by side.
      paste -d '\t' <(nm -p --defined-only "$object" 2>/dev/null) \
        <(nm -p -C --defined-only "$object" 2>/dev/null)
    done | awk -F '\t' -v hot="$here/hot-functions.txt" '
      BEGIN { while ((getline name < hot) > 0) if (name !~ /^#/) rank[name] = ++n }
      {
        # "ADDR T NAME" (ADDR absent for an undefined symbol, excluded by --defined-only)
        split($1, m, " "); type = m[2]; mangled = m[3]
        if (type !~ /^[tTwW]$/) next
        demangled = $2; sub(/^[^ ]* [^ ]* /, "", demangled)
        if (demangled in rank) { print rank[demangled] "\t" mangled; found[demangled] = 1 }
      }
      # A C function (glibc, ring): not mangled, and in libraries searched with -l, so it is
      # named as it is.
      END { for (name in rank) if (!(name in found) && name ~ /^[A-Za-z_][A-Za-z0-9_.]*$/) print rank[name] "\t" name }' | sort -n -s -k1,1 | cut -f2 >"$order" || { rm -f "$order"; order=""; }
  fi
fi
if [ -n "$order" ] && [ -s "$order" ]; then
  cc "$@" "-Wl,--symbol-ordering-file=$order" -Wl,--no-warn-symbol-ordering
  status=$?
else
  cc "$@"
  status=$?
fi
[ -n "$order" ] && rm -f "$order"
exit $status
