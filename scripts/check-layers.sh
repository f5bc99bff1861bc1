#!/usr/bin/env bash
# The engine's folders are layers (engine/src/lib.rs): each may import only from the folders
# below it and from the foundation files at the crate root (sync, error, options, addr_map).
# Prints the folder-level import graph with `--graph`; fails on an upward import.
set -euo pipefail
cd "$(dirname "$0")/../engine/src"

# Bottom to top. `db` is engine/src/db.rs (`crate::Db` is its re-export).
LAYERS=(io mvcc store alloc writer tree durable txn db check)

rank() {
  local i
  for i in "${!LAYERS[@]}"; do
    if [ "${LAYERS[$i]}" = "$1" ]; then echo "$i"; return; fi
  done
  echo -1 # a foundation file, or a type re-exported at the crate root
}

status=0
for layer in "${LAYERS[@]}"; do
  if [ "$layer" = db ]; then files=db.rs; else files=$(find "$layer" -name '*.rs'); fi
  mine=$(rank "$layer")
  # `crate::x` paths, and the names inside `crate::{a, b::c}` groups.
  targets=$(grep -hoE 'crate::(\{[^}]*\}|[A-Za-z_]+)' $files \
    | sed -E 's/^crate:://; s/[{}]//g' | tr ',' '\n' | sed -E 's/^ *//; s/::.*$//' \
    | sed -E 's/^Db$/db/' | sort -u | grep -v '^$' || true)
  deps=()
  for t in $targets; do
    [ "$t" = "$layer" ] && continue
    r=$(rank "$t")
    [ "$r" -lt 0 ] && continue
    deps+=("$t")
    if [ "$r" -gt "$mine" ]; then
      echo "error: engine/src/$layer imports crate::$t, a layer above it" >&2
      grep -nE "crate::(\{[^}]*\b$t\b|$t\b)" $files >&2 || true
      status=1
    fi
  done
  if [ "${1:-}" = --graph ]; then echo "$layer -> ${deps[*]:-}"; fi
done
exit $status
