#!/usr/bin/env bash
# Instruction counts of the micro-benchmark bodies under valgrind callgrind
# (deterministic, so they compare across noisy runs), and each one's ratio to
# the B-map body of the same operation.
#
#   bench/callgrind.sh [--quick] [OUT_FILE]
#
# Prints a Markdown table; OUT_FILE (optional) gets "body ops ir ir_per_op" lines.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
OUT=/dev/null
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    *) OUT=$a ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
INSTR=$(cargo bench -q -p userlane-core --bench instr --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$INSTR" ] || { echo "cannot find the instr bench executable" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
: > "$OUT"

# body  ops  B-map body of the same operation
if [ "$QUICK" = 1 ]; then
  BODIES="send_userlane_by_id:2000:send_b_map send_b_map:2000:send_b_map"
else
  BODIES="send_userlane_by_id:10000:send_b_map send_userlane_by_handle:10000:send_b_map send_shim_by_id:10000:send_b_map
send_b_map:10000:send_b_map send_b_rw:10000:send_b_map
connect_disconnect_userlane:10000:connect_disconnect_b_map connect_disconnect_b_map:10000:connect_disconnect_b_map
create_reclaim_userlane:10000:create_reclaim_b_map create_reclaim_b_map:10000:create_reclaim_b_map
fanout8_userlane:10000:fanout8_b_map fanout8_async_broadcast:10000:fanout8_b_map fanout8_embassy:10000:fanout8_b_map fanout8_b_map:10000:fanout8_b_map
fanout10k_userlane:10:fanout10k_b_map fanout10k_async_broadcast:10:fanout10k_b_map fanout10k_embassy:10:fanout10k_b_map fanout10k_b_map:10:fanout10k_b_map"
fi

declare -A PER
for spec in $BODIES; do
  IFS=: read -r body ops _ <<<"$spec"
  fn=body_$body
  case $body in fanout8_* | fanout10k_*) fn=body_fanout_${body#*_} ;; esac
  valgrind --tool=callgrind --toggle-collect="*${fn}*" --callgrind-out-file="$TMP/$body.out" \
    "$INSTR" "$body" "$ops" >/dev/null 2>"$TMP/$body.err" || { cat "$TMP/$body.err" >&2; exit 1; }
  ir=$(sed -n 's/^summary: //p' "$TMP/$body.out")
  PER[$body]=$(awk -v ir="$ir" -v n="$ops" 'BEGIN { printf "%.1f", ir / n }')
  echo "$body $ops $ir ${PER[$body]}" >>"$OUT"
done

echo "| body | instructions per op | ratio to B-map |"
echo "|---|---:|---:|"
for spec in $BODIES; do
  IFS=: read -r body _ base <<<"$spec"
  ratio=$(awk -v a="${PER[$body]}" -v b="${PER[$base]:-0}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }')
  echo "| \`$body\` | ${PER[$body]} | $ratio |"
done
