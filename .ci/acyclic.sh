#!/usr/bin/env bash
# Fails when the modules of a crate import each other in a cycle.
# Usage: .ci/acyclic.sh PACKAGE...
# cargo-modules lists which module uses which (its "uses" edges, from `use`
# declarations and paths in the code; items, externs and std filtered out);
# tsort finds a loop in that graph if there is one.
# With --all-features, so that modules behind a feature (userlane-core's
# `shim`, its serde and log code) are in the graph too.
set -euo pipefail
status=0
for pkg in "$@"; do
  edges=$(cargo modules dependencies -p "$pkg" --lib --all-features --no-externs --no-sysroot --no-fns --no-traits --no-types 2>/dev/null \
    | sed -n 's/^ *"\([^"]*\)" -> "\([^"]*\)" \[label="uses".*/\1 \2/p' \
    | awk '$1 != $2')
  if [ -z "$edges" ]; then
    echo "$pkg: cargo-modules reported no module edges (has its output changed?)" >&2
    exit 1
  fi
  if loop=$(tsort <<<"$edges" 2>&1 >/dev/null) && [ -z "$loop" ]; then
    echo "$pkg: $(wc -l <<<"$edges") module edges, no import cycle"
  else
    echo "$pkg: its modules import each other in a cycle:" >&2
    echo "$loop" >&2
    status=1
  fi
done
exit "$status"
