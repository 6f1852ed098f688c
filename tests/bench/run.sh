#!/usr/bin/env bash
# The benchmark: efs-proxy against a direct connection, socat (128 KiB buffers, and 8 KiB) and
# stunnel4, one table per client pattern (tokio client, bulk, trickling, 4 and 16 connections,
# libnfs against nfs-ganesha), release build, every target of issue 17 checked per pattern.
#
#   tests/bench/run.sh [efs-bench options]   full run (3 rounds, about 8 minutes)
#   tests/bench/run.sh --quick               one short round: checks the harness, not figures
#   tests/bench/run.sh --patterns trickle --rounds 5 --only stunnel,efs-proxy
#
# Prints the tables and writes target/bench/efs-bench.json (efs-bench --help: every option).
# Needs socat, stunnel4 and openssl; the libnfs pattern also needs root, nfs-ganesha,
# libnfs-utils, rpcbind and unshare (tests/harness/install-deps.sh installs them). For that
# pattern the whole run happens in a fresh network and mount namespace (tests/bench/netns.sh):
# loopback only, its own rpcbind (ganesha 4.3 will not start NFSv3 without one) and ganesha.
# Without those, the libnfs pattern is left out and the run says why.
# Figures are ratios from one run on one machine: read the ratios, not the absolute figures.
# The Linux kernel client (in a QEMU guest) through the same forwarders: tests/bench/kernel.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
for tool in socat stunnel4 openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (tests/harness/install-deps.sh)" >&2; exit 2; }
done
cargo build --release --locked -p efs-proxy -p efs-proxy-tests --bins
BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/efs-bench

# Does this run include the libnfs pattern? (the default list does)
libnfs=yes
prev=
for arg in "$@"; do
  case $arg in
    --patterns=*) [[ ${arg#--patterns=} == *libnfs* ]] || libnfs=no ;;
  esac
  if [ "$prev" = --patterns ]; then [[ $arg == *libnfs* ]] || libnfs=no; fi
  prev=$arg
done
if [ $libnfs = yes ]; then
  why=
  [ "$(id -u)" = 0 ] || why="not root"
  for tool in ganesha.nfsd rpcbind nfs-cp nfs-cat unshare ip; do
    command -v "$tool" >/dev/null || why="${why:+$why, }$tool not found"
  done
  if [ -z "$why" ]; then
    exec unshare --net --mount "$ROOT/tests/bench/netns.sh" "$BENCH" "$@"
  fi
  echo "bench: leaving out the libnfs pattern: $why (tests/harness/install-deps.sh)" >&2
  exec "$BENCH" --patterns rust,bulk,trickle,conc4,conc16 "$@"
fi
exec "$BENCH" "$@"
