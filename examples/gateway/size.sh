#!/usr/bin/env bash
# Builds the NUCLEO-F767ZI firmware in release and checks what it takes:
# flash (vector table + code + read-only data + initialised data) at most
# 192 KiB, static RAM (.data + .bss: every buffer, network ones included)
# at most 96 KiB. Prints the figures; exits non-zero over budget.
set -euo pipefail
cd "$(dirname "$0")"
FLASH_BUDGET=$((192 * 1024))
RAM_BUDGET=$((96 * 1024))
TARGET=thumbv7em-none-eabihf
BIN=gateway-nucleo-f767zi

# A throwaway secret: this build is measured, not flashed.
export USERLANE_GATEWAY_SECRET="${USERLANE_GATEWAY_SECRET:-size-check-only}"
cargo build --release --target "$TARGET" --features board --bin "$BIN"

target_dir="${CARGO_TARGET_DIR:-target}"
elf="$target_dir/$TARGET/release/$BIN"
llvm_size="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
[ -x "$llvm_size" ] || { echo "llvm-size missing: rustup component add llvm-tools" >&2; exit 1; }

"$llvm_size" -A "$elf"
read -r flash ram < <("$llvm_size" -A "$elf" | awk '
  $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
  $1 == ".data" { flash += $2; ram += $2 }
  $1 == ".bss" || $1 == ".uninit" { ram += $2 }
  END { print flash, ram }')

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
printf '%s (8 connections, 4 users, 2 per user, 1 KiB messages, 4 queued per connection):\n' "$BIN"
printf '  flash      %7d bytes (%s) of %d (%s)\n' "$flash" "$(kib "$flash")" "$FLASH_BUDGET" "$(kib "$FLASH_BUDGET")"
printf '  static RAM %7d bytes (%s) of %d (%s)\n' "$ram" "$(kib "$ram")" "$RAM_BUDGET" "$(kib "$RAM_BUDGET")"
status=0
if [ "$flash" -gt "$FLASH_BUDGET" ]; then echo "flash over budget" >&2; status=1; fi
if [ "$ram" -gt "$RAM_BUDGET" ]; then echo "static RAM over budget" >&2; status=1; fi
exit $status
