# Shared by bench/run.sh and bench/hostile.sh (sourced, not run): options,
# paths, core pinning, stopping the server, and writing a results section
# into BENCHMARKS.md. Expects to be sourced from the repository root.

# bench_init "$@": --quick (QUICK=1, WRITE=0) and --no-write (WRITE=0);
# ROOT, CARGO_TARGET_DIR, T0 and the pinning (SRV: core 0, CLI: core 1 on a
# machine with two cores or more and taskset, else nothing).
bench_init() {
  ROOT=$PWD
  QUICK=0
  WRITE=1
  for a in "$@"; do
    case $a in
      --quick) QUICK=1; WRITE=0 ;;
      --no-write) WRITE=0 ;;
      *) echo "unknown option $a" >&2; exit 2 ;;
    esac
  done
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  export CARGO_TERM_COLOR=never
  T0=$(date +%s)
  if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SRV="taskset -c 0" CLI="taskset -c 1"
  else
    SRV="" CLI=""
  fi
  SPID=""
}

step() { printf '\n==> [%4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }

# stop: ends the server started last (its pid in SPID).
stop() {
  if [ -n "$SPID" ]; then
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
  fi
  SPID=""
}

# write_section NAME TABLES_FILE: replaces what BENCHMARKS.md holds between
# <!-- NAME:begin --> and <!-- NAME:end --> with the file's text.
write_section() {
  python3 - "$1" "$2" <<'PY'
import sys
name, tables = sys.argv[1], open(sys.argv[2]).read()
doc = open("BENCHMARKS.md").read()
head, rest = doc.split(f"<!-- {name}:begin -->", 1)
_, tail = rest.split(f"<!-- {name}:end -->", 1)
open("BENCHMARKS.md", "w").write(f"{head}<!-- {name}:begin -->\n{tables}\n<!-- {name}:end -->{tail}")
PY
  step "BENCHMARKS.md updated ($1)"
}
