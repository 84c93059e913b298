#!/usr/bin/env bash
# userlane benchmarks: micro-benchmarks (criterion), instruction counts
# (callgrind) and system benchmarks (load client vs B-echo / B-raw, and vs
# the peers of bench/peers: tokio-tungstenite, fastwebsockets, Node.js ws, a
# tokio fan-out), every ratio against a baseline or peer measured in this run.
# Writes BENCHMARKS.md-ready tables to
# $CARGO_TARGET_DIR/bench-results/<time>/tables.md and, for a full run, into
# BENCHMARKS.md between the results markers.
#
#   bench/run.sh            full run (≈ 7.5 min on 2 cores after the build, plus about 5 min for the peers), 3 runs per system measurement
#   bench/run.sh --quick    ≈ 1.5 min after the build: smaller sizes, 1 run; reports, never asserts timings
#   options: --no-write (leave BENCHMARKS.md alone)
#   ECHO_RATE=N             the offered rate of the peer comparison (msgs/s in all; default 50,000)
#
# Loopback only; every client run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init "$@"
export RUST_LOG=${RUST_LOG:-error}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=$CARGO_TARGET_DIR/bench-results/$STAMP$([ $QUICK = 1 ] && echo -quick || true)
mkdir -p "$OUT"
RES=$OUT/results.txt
SKIPPED=$OUT/skipped.txt
: >"$RES"
: >"$SKIPPED"
# skip DESIGN REASON...: a peer that is not run, said loudly here and in the tables.
skip() {
  local design=$1
  shift
  echo "$design $*" >>"$SKIPPED"
  printf '\n!!! SKIPPED %s: %s\n' "$design" "$*" >&2
}

if [ "$QUICK" = 1 ]; then
  RUNS=1 CRIT="--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10"
  ECHO_SECS=1 IDLE_CONNS=1000 FAN_CONNS=1000 FAN_BURSTS=2 SLOW_CONNS=200 SLOW_SECS=14
else
  RUNS=3 CRIT="--warm-up-time 1 --measurement-time 3 --sample-size 30"
  ECHO_SECS=4 IDLE_CONNS=10000 FAN_CONNS=10000 FAN_BURSTS=5 SLOW_CONNS=1000 SLOW_SECS=30
fi
SLOW_N=10 SLOW_RATE=25 SLOW_SIZE=16384
# The offered rate of the peer comparison (msgs/s in all, both echo profiles):
# below the load client's ceiling, so the client is not what limits it (the
# report checks that every server reached it and that the client's core stayed
# below 80 %).
ECHO_RATE=${ECHO_RATE:-50000}

step "build (release)"
cargo build -q --release -p userlane-bench
cargo bench -q -p userlane-core --no-run --bench send --bench fanout --bench instr 2>/dev/null
BIN=$CARGO_TARGET_DIR/release

# The peers: their own workspace (bench/peers) and, for Node.js, npm ci of the
# pinned ws. A peer that cannot be built is skipped, never silently.
PEERS_RS=1 PEER_NODE=1
if ! cargo build -q --release --manifest-path bench/peers/Cargo.toml >"$OUT/peers-build.log" 2>&1; then
  PEERS_RS=0
  for p in tt-default tt-4k fastws peer-fanout; do skip $p "the Rust peers did not build (see peers-build.log)"; done
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PEER_NODE=0
  skip node-ws "node and npm are not installed"
elif ! (cd bench/peers/node && npm ci --no-audit --no-fund --silent) >"$OUT/peers-npm.log" 2>&1; then
  PEER_NODE=0
  skip node-ws "npm ci failed (registry unreachable?) (see peers-npm.log)"
fi

{
  echo "date (UTC):   $(date -u '+%Y-%m-%d %H:%M')"
  echo "mode:         $([ $QUICK = 1 ] && echo quick || echo full), $RUNS run(s) per system measurement"
  echo "cpu:          $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') × $(nproc)"
  echo "memory:       $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel:       $(uname -sr)"
  echo "rustc:        $(rustc --version)"
  echo "ulimit -n:    $(ulimit -n)"
  echo "pinning:      server ${SRV:-none}, client ${CLI:-none}"
  echo "peers:        tokio-tungstenite $(sed -n '/^name = "tokio-tungstenite"$/{n;s/version = "\(.*\)"/\1/p}' bench/peers/Cargo.lock) (tungstenite $(sed -n '/^name = "tungstenite"$/{n;s/version = "\(.*\)"/\1/p}' bench/peers/Cargo.lock)), fastwebsockets $(sed -n '/^name = "fastwebsockets"$/{n;s/version = "\(.*\)"/\1/p}' bench/peers/Cargo.lock), hyper $(sed -n '/^name = "hyper"$/{n;s/version = "\(.*\)"/\1/p}' bench/peers/Cargo.lock), tokio $(sed -n '/^name = "tokio"$/{n;s/version = "\(.*\)"/\1/p}' bench/peers/Cargo.lock); node $(node --version 2>/dev/null || echo none), ws $(sed -n 's/.*"ws": "\(.*\)".*/\1/p' bench/peers/node/package.json)"
  echo "offered rate: $ECHO_RATE msgs/s in all (peer comparison)"
  echo "crates:       $(for c in tungstenite async-tungstenite smol criterion async-broadcast async-channel embassy-sync; do
    printf '%s %s, ' "$c" "$(awk -v n="$c" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"; done | sed 's/, $//')"
  echo "tungstenite:  read buffer 4 KiB, write buffer 4 KiB, max write buffer 4 KiB + 2 × 64 KiB + 1 KiB, max message/frame 64 KiB (all servers and the client)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

# ---------------------------------------------------------------- micro
step "criterion micro-benchmarks"
CRIT_DIR=$CARGO_TARGET_DIR/criterion
rm -rf "$CRIT_DIR"/send_to_user_10k* "$CRIT_DIR"/fanout_* "$CRIT_DIR"/lifecycle
# shellcheck disable=SC2086
{
  $SRV cargo bench -q -p userlane-core --bench send -- $CRIT 'send_to_user_10k/|lifecycle'
  # The churn case needs both cores: the churn thread runs beside the sender.
  cargo bench -q -p userlane-core --bench send -- $CRIT 'churn'
  $SRV cargo bench -q -p userlane-core --bench fanout -- $CRIT
} >"$OUT/criterion.txt" 2>&1 || { tail -30 "$OUT/criterion.txt" >&2; exit 1; }
# Keep this run's estimates with its results (the next run overwrites criterion's own).
mkdir -p "$OUT/criterion"
cp -r "$CRIT_DIR"/send_to_user_10k* "$CRIT_DIR"/fanout_* "$CRIT_DIR"/lifecycle "$OUT/criterion/"

if command -v valgrind >/dev/null; then
  step "callgrind instruction counts"
  bench/callgrind.sh $([ $QUICK = 1 ] && echo --quick) "$OUT/callgrind.txt" >"$OUT/callgrind.md"
else
  step "callgrind skipped: valgrind is not installed"
fi

# ---------------------------------------------------------------- system
PORT=0
start() { # start NAME CMD...: the server on a free port; its pid in SPID, its port in PORT
  local name=$1
  shift
  # shellcheck disable=SC2086
  $SRV "$@" --listen "127.0.0.1:0" >"$OUT/server-$name.log" 2>&1 &
  SPID=$!
  for _ in $(seq 200); do
    PORT=$(sed -n 's/^READY [0-9.]*:\([0-9]*\) pid .*/\1/p' "$OUT/server-$name.log" 2>/dev/null)
    [ -n "$PORT" ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  echo "server $name did not start:" >&2
  cat "$OUT/server-$name.log" >&2
  stop
  return 1
}
trap 'stop; kill $(jobs -p) 2>/dev/null || true' EXIT
load() { # load TEST DESIGN RUN ARGS...: one client run, its RESULT line recorded
  local test=$1 design=$2 run=$3
  shift 3
  local line
  # shellcheck disable=SC2086
  line=$($CLI "$BIN/userlane-load" "$@" --addr "127.0.0.1:$PORT" --server-pid "$SPID" 2>>"$OUT/client.log" | grep '^RESULT' || true)
  [ -n "$line" ] || line="RESULT $test error=no-result"
  echo "$test $design $run $line" | tee -a "$RES" >&2
}
USERLANE="$BIN/bench-userlane-server"
BECHO="$BIN/bench-echo-server"
BRAW="$BIN/bench-raw-fanout"
# start_design DESIGN: the server of a design. A peer that does not start is
# skipped (the caller goes on with the next design); userlane or a baseline
# that does not start ends the run.
start_design() {
  local design=$1
  if ! start_server "$design"; then
    case $design in
      userlane | b-*) exit 1 ;;
    esac
    skip "$design" "did not start (see server-$design.log)"
    return 1
  fi
}
start_server() {
  local design=$1
  shift
  case $design in
    userlane) start "$design" "$USERLANE" "$@" ;;
    b-echo) start "$design" "$BECHO" "$@" ;;
    b-echo-default) start "$design" "$BECHO" --default-buffers "$@" ;;
    b-raw) start "$design" "$BRAW" "$@" ;;
    tt-default) start "$design" "$BIN/peer-tokio-tungstenite" --buffers default "$@" ;;
    tt-4k) start "$design" "$BIN/peer-tokio-tungstenite" --buffers 4k "$@" ;;
    fastws) start "$design" "$BIN/peer-fastwebsockets" "$@" ;;
    peer-fanout) start "$design" "$BIN/peer-tokio-fanout" "$@" ;;
    node-ws) start "$design" node bench/peers/node/server.js "$@" ;;
    *) echo "unknown design $design" >&2; exit 2 ;;
  esac
}
# The peers of this run that can be started.
PEERS=""
[ "$PEERS_RS" = 1 ] && PEERS="tt-default tt-4k fastws"
[ "$PEER_NODE" = 1 ] && PEERS="$PEERS node-ws"

for run in $(seq "$RUNS"); do
  step "echo, run $run/$RUNS"
  for design in userlane b-echo; do
    start_design $design || continue
    load echo20 $design "$run" echo --conns 100 --size 20 --secs "$ECHO_SECS" --prefix "e$run-"
    load echo1k $design "$run" echo --conns 10 --size 1024 --secs "$ECHO_SECS" --prefix "k$run-"
    stop
  done

  step "echo at $ECHO_RATE msgs/s offered, userlane and peers, run $run/$RUNS"
  for design in userlane b-echo $PEERS; do
    start_design $design || continue
    load echo20r $design "$run" echo --conns 100 --size 20 --secs "$ECHO_SECS" --rate "$ECHO_RATE" --prefix "r$run-"
    load echo1kr $design "$run" echo --conns 10 --size 1024 --secs "$ECHO_SECS" --rate "$ECHO_RATE" --prefix "q$run-"
    stop
  done

  step "idle memory, run $run/$RUNS"
  for design in userlane b-echo b-echo-default $PEERS; do
    start_design $design || continue
    load idle $design "$run" idle --conns "$IDLE_CONNS" --settle 2
    stop
  done

  step "fan-out, run $run/$RUNS"
  for design in userlane b-raw $([ "$PEERS_RS" = 1 ] && echo peer-fanout); do
    start_design $design || continue
    load fanout $design "$run" fanout --conns "$FAN_CONNS" --bursts "$FAN_BURSTS" --per-burst 10 --size 64
    stop
  done

  step "slow consumers, run $run/$RUNS"
  for design in without with; do
    [ "$QUICK" = 1 ] && [ $design = without ] && continue
    start "slow-$design" "$USERLANE" || exit 1
    healthy=$((SLOW_CONNS - SLOW_N))
    # shellcheck disable=SC2086
    $CLI "$BIN/userlane-load" hold --addr "127.0.0.1:$PORT" --conns "$SLOW_N" --first "$healthy" \
      --rcvbuf 4096 --secs $((SLOW_SECS + 20)) >"$OUT/hold.out" 2>>"$OUT/client.log" &
    HOLD=$!
    for _ in $(seq 200); do grep -q READY "$OUT/hold.out" && break; sleep 0.05; done
    stop_args=""
    [ $design = with ] && stop_args="--stop-pid $HOLD --expect-slow $SLOW_N"
    # shellcheck disable=SC2086
    load slow $design "$run" paced --conns "$healthy" --users "$SLOW_CONNS" --rate "$SLOW_RATE" \
      --secs "$SLOW_SECS" --size "$SLOW_SIZE" --stop-after 2 $stop_args --timeout $((SLOW_SECS + 30))
    if [ $design = without ]; then
      kill "$HOLD" 2>/dev/null || true
      wait "$HOLD" 2>/dev/null || true
    else
      wait "$HOLD" 2>/dev/null || true
      line=$(grep '^RESULT' "$OUT/hold.out" || echo "RESULT hold error=no-result")
      echo "slow-hold $design $run $line" | tee -a "$RES" >&2
    fi
    stop
  done
done

echo "load at end:  $(cut -d' ' -f1-3 /proc/loadavg); total $(($(date +%s) - T0)) s" >>"$OUT/machine.txt"
step "report"
python3 bench/report.py "$OUT" "$OUT/criterion" $([ $QUICK = 1 ] && echo --quick) >"$OUT/tables.md"
cat "$OUT/tables.md"
if [ "$WRITE" = 1 ] && [ -f BENCHMARKS.md ] && grep -q '<!-- results:begin -->' BENCHMARKS.md; then
  write_section results "$OUT/tables.md"
fi
step "done: $OUT ($(($(date +%s) - T0)) s)"
