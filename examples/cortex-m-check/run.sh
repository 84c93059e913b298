#!/usr/bin/env bash
# Builds the Cortex-M check and runs it on QEMU (mps2-an386, a Cortex-M4F),
# with a time limit. Installs nothing: needs the thumbv7em-none-eabihf target
# (rustup target add thumbv7em-none-eabihf) and qemu-system-arm (Debian
# package qemu-system-arm). Exits non-zero if any scenario fails, the binary
# panics or faults, or QEMU does not exit within 120 s.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v qemu-system-arm >/dev/null; then
  echo "run.sh: qemu-system-arm not found (Debian package qemu-system-arm)" >&2
  exit 1
fi

cargo build --release --locked
# The runner in .cargo/config.toml starts QEMU; semihosting hands the
# binary's exit status (0 all passed, 1 otherwise) back to it.
status=0
timeout 120 cargo run --release --locked || status=$?
if [ "$status" -eq 124 ]; then
  echo "run.sh: the Cortex-M check did not finish within 120 s" >&2
fi
exit "$status"
