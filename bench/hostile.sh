#!/usr/bin/env bash
# Hostile-client figures of the release example server (userlane-server) in
# production mode with a real secret, measured with `userlane-load`:
#
#   flood      ten users ping/pong every 50 ms for --secs; in the attack run
#              one more user sends 60 KB user_message frames without reading.
#              Reported: the victims' p99 against the run without the attacker
#              (same server build, same run of this script), the server's RSS
#              growth, the /healthz answers seen during the run.
#   slowloris  1,000 sockets dripping a request head (or a body of a declared
#              65,536 bytes) one byte every 5 s, against a server limited to
#              1,024 descriptors; a legitimate client connects meanwhile.
#
#   bench/hostile.sh            3 runs of each flood, 1,000 slowloris sockets, writes BENCHMARKS.md
#   bench/hostile.sh --quick    1 run, 3 s floods, 200 sockets; reports only
#
# Loopback only; every client run is bounded in count and time (≈ 2.5 min in all).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init "$@"
if [ "$QUICK" = 1 ]; then RUNS=1 SECS=5 SOCKETS=200; else RUNS=3 SECS=10 SOCKETS=1000; fi
OUT=$CARGO_TARGET_DIR/bench-results/hostile-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"
SECRET=hostile-benchmark-secret-0123456789

step "build (release)"
[ -n "${HOSTILE_NO_BUILD:-}" ] || cargo build -q --release -p userlane-examples --bin userlane-server -p userlane-bench --bin userlane-load
BIN=$CARGO_TARGET_DIR/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=0
OPS=0
start() { # start NAME [ULIMIT]: the server in production; pid in SPID, port in PORT, ops port in OPS
  local name=$1 nofile=${2:-}
  PORT=$(free_port)
  OPS=$(free_port)
  # shellcheck disable=SC2086
  ({ [ -z "$nofile" ] || ulimit -n "$nofile"; } && exec env -i PATH="$PATH" USERLANE_ENV=production USERLANE_JWT_SECRET="$SECRET" \
    RUST_LOG=warn $SRV "$BIN/userlane-server" --listen "127.0.0.1:$PORT" --ops-listen "127.0.0.1:$OPS") >"$OUT/server-$name.log" 2>&1 &
  SPID=$!
  for _ in $(seq 200); do
    grep -q "listening on" "$OUT/server-$name.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server $name did not start:" >&2
  cat "$OUT/server-$name.log" >&2
  exit 1
}
trap 'stop' EXIT
load() { # load TEST RUN ARGS...: one client run, its RESULT line recorded
  local test=$1 run=$2
  shift 2
  local line
  # shellcheck disable=SC2086
  line=$($CLI "$BIN/userlane-load" "$@" --addr "127.0.0.1:$PORT" --secret "$SECRET" \
    --server-pid "$SPID" --ops-addr "127.0.0.1:$OPS" --timeout 120 2>>"$OUT/client.log" | grep '^RESULT' || true)
  [ -n "$line" ] || line="RESULT $test error=no-result"
  echo "$test $run $line" | tee -a "$RES" >&2
}

for run in $(seq "$RUNS"); do
  for mode in quiet attack; do
    step "flood ($mode), run $run/$RUNS"
    start "flood-$mode-$run"
    load "flood-$mode" "$run" flood --victims 10 --secs "$SECS" --size 60000 --run "$run" \
      $([ $mode = attack ] && echo --attack)
    stop
  done
done
for kind in head body; do
  step "slowloris ($kind), $SOCKETS sockets, server limited to 1,024 descriptors"
  start "slowloris-$kind" 1024
  load "slowloris-$kind" 1 slowloris --sockets "$SOCKETS" --kind "$kind" --drip-secs 5 --secs 30
  stop
done

step "report"
python3 - "$RES" "$QUICK" >"$OUT/tables.md" <<'PY'
import re, statistics, sys
rows = [l.split(None, 2) for l in open(sys.argv[1]) if l.strip()]
quick = sys.argv[2] == "1"
def fields(s):
    return dict(kv.split("=", 1) for kv in s.split() if "=" in kv)
flood = {"flood-quiet": [], "flood-attack": []}
slow = {}
for test, run, line in rows:
    f = fields(line)
    if test in flood:
        flood[test].append(f)
    else:
        slow[test] = f
def med(runs, key):
    v = [float(r[key]) for r in runs if key in r]
    return (statistics.median(v), min(v), max(v)) if v else (float("nan"),) * 3
def fmt(t, unit=""):
    m, lo, hi = t
    return f"{m:.0f}{unit} ({lo:.0f}–{hi:.0f})" if len(flood["flood-quiet"]) > 1 else f"{m:.0f}{unit}"
q, a = flood["flood-quiet"], flood["flood-attack"]
p99q, p99a = med(q, "p99_us"), med(a, "p99_us")
growth = med(a, "rss_growth_kib")
bad = sum(int(r.get("healthz_other", 0)) for r in a)
ok = sum(int(r.get("healthz_200", 0)) for r in a)
ratio = p99a[0] / p99q[0] if p99q[0] else float("nan")
print("### Hostile clients (example server, release, production mode)\n")
print(f"{'quick mode: ' if quick else ''}{len(a)} run(s) of each flood; median (min–max).\n")
print("| measurement | without attacker | with attacker | target | met |")
print("|---|---|---|---|---|")
print(f"| victims' ping p99 (µs), 10 users | {fmt(p99q)} | {fmt(p99a)} | ≤ 2× without: **{ratio:.2f}×** | {'yes' if ratio <= 2 else 'no'} |")
print(f"| victims' ping p50 (µs) | {fmt(med(q, 'p50_us'))} | {fmt(med(a, 'p50_us'))} | — | — |")
print(f"| server RSS growth during the run (KiB) | {fmt(med(q, 'rss_growth_kib'))} | {fmt(growth)} | ≤ 32 MiB | {'yes' if growth[1] <= 32768 and growth[2] <= 32768 else 'no'} |")
print(f"| `/healthz` answers other than 200 | {sum(int(r.get('healthz_other', 0)) for r in q)} | {bad} of {bad + ok} | 0 | {'yes' if bad == 0 and ok > 0 else 'no'} |")
frames = med(a, "attacker_frames")
closed = [int(r.get("server_closed_1008", 0)) for r in a]
seen = ", ".join(r.get("attacker_close", "?").replace("0", "reset") if r.get("attacker_close") == "0" else r.get("attacker_close", "?") for r in a)
print(f"| attacker: 60 KB frames its socket took | — | {fmt(frames)} | — | — |")
print(f"| attacker closed by the server with 1008 (server's count, per run) | — | {', '.join(map(str, closed))} | 1 in every run | {'yes' if closed and all(c == 1 for c in closed) else 'no'} |")
print(f"| what the attacker read when it finally read, 10 s in | — | {seen} | — | — |")
print()
print("| slowloris | sockets opened | open when the legitimate client came | closed by the server | close after (p50 / max, s) | legitimate HTTP / WebSocket | target | met |")
print("|---|---|---|---|---|---|---|---|")
for kind in ("head", "body"):
    f = slow.get(f"slowloris-{kind}", {})
    allclosed = f.get("still_open") == "0"
    within = float(f.get("close_max_s", "nan")) <= 11.0
    legit = f.get("legit_http") == "200" and f.get("legit_ws") == "ok"
    print(f"| {kind} | {f.get('opened', '?')} | {f.get('open_when_legit_came', '?')} | {f.get('closed', '?')} | {f.get('close_p50_s', '?')} / {f.get('close_max_s', '?')} | {f.get('legit_http', '?')} ({f.get('legit_http_ms', '?')} ms) / {f.get('legit_ws', '?')} ({f.get('legit_ws_ms', '?')} ms) | all closed within the 10 s request deadline (+1 s), legitimate client served | {'yes' if allclosed and within and legit else 'no'} |")
PY
cat "$OUT/tables.md"
if [ "$WRITE" = 1 ] && grep -q '<!-- hostile:begin -->' BENCHMARKS.md; then
  write_section hostile "$OUT/tables.md"
fi
step "done: $OUT"
