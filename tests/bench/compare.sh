#!/usr/bin/env bash
# Before/after: this checkout's efs-proxy against the one built from an earlier revision,
# measured in alternation in one run (medians of several rounds; release builds).
#
#   tests/bench/compare.sh REV [efs-bench options]      (e.g. compare.sh HEAD~1 --rounds 7)
#
# REV is built once in a git worktree under target/bench-base/ and its binary kept there;
# then `efs-bench --only efs-proxy --baseline REV=... --rounds 5 --no-multiplex` runs (later
# options override those defaults).
# Prints both rows and "efs-proxy / REV" ratios; JSON in target/bench/efs-bench.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
[ $# -ge 1 ] || { echo "usage: $0 REV [efs-bench options]" >&2; exit 2; }
rev=$1
shift
commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "compare: $rev is not a commit" >&2; exit 2; }
short=${commit:0:10}
base=${CARGO_TARGET_DIR:-$ROOT/target}/bench-base
bin=$base/efs-proxy-$short
if [ ! -x "$bin" ]; then
  tree=$base/src-$short
  [ -d "$tree" ] || git worktree add --detach "$tree" "$commit" >/dev/null
  echo "compare: building efs-proxy at $rev ($short) in $tree" >&2
  # The shared target directory reuses every compiled dependency; the worktree's own crates
  # get other hashes (their path differs), and run.sh's build below puts this checkout's
  # binary back in place.
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  (cd "$tree" && CARGO_TARGET_DIR=$target cargo build --release --locked -p efs-proxy --bin efs-proxy)
  cp "$target/release/efs-proxy" "$bin.tmp" && mv "$bin.tmp" "$bin"
  git worktree remove --force "$tree"
fi
exec "$ROOT/tests/bench/run.sh" --only efs-proxy --no-multiplex --rounds 5 --baseline "$rev=$bin" "$@"
