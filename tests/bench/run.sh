#!/usr/bin/env bash
# The benchmark: efs-proxy against a direct connection, socat and stunnel4, release build.
#
#   tests/bench/run.sh [efs-bench options]     (e.g. --seconds 8 --calls 5000)
#
# Prints a table of absolute figures and ratios and writes target/bench/efs-bench.json.
# Needs socat, stunnel4 and openssl (tests/harness/install-deps.sh installs them).
# Figures are ratios from one run on one machine: run it on a quiet machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
for tool in socat stunnel4 openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (tests/harness/install-deps.sh)" >&2; exit 2; }
done
cargo build --release --locked -p efs-proxy -p efs-proxy-tests --bins
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/efs-bench" "$@"
