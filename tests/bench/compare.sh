#!/usr/bin/env bash
# Before/after: this checkout's efs-proxy against another build, measured in alternation in
# one run (medians of several rounds; release builds).
#
#   tests/bench/compare.sh REV [efs-bench options]           the build of git revision REV
#   tests/bench/compare.sh --patch FILE [efs-bench options]  HEAD with FILE applied (a variant
#                                                            kept as an experiment, e.g.
#                                                            tests/bench/experiments/*.patch)
#
# The other build is made once in a git worktree under target/bench-base/ and its binary
# kept there; then `efs-bench --only efs-proxy --baseline NAME=... --rounds 5 --no-multiplex`
# runs through run.sh (later options override those defaults, e.g. `--patterns trickle,libnfs
# --rounds 3`). Prints both rows per client pattern and "efs-proxy / NAME" ratios per pattern;
# JSON in target/bench/efs-bench.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
usage="usage: $0 REV|--patch FILE [efs-bench options]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
patch=
if [ "$1" = --patch ]; then
  if [ $# -lt 2 ] || [ ! -f "$2" ]; then echo "$usage (FILE must exist)" >&2; exit 2; fi
  patch=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
  rev=HEAD
  name=$(basename "$2" .patch)
  shift 2
else
  rev=$1
  name=$1
  shift
fi
commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "compare: $rev is not a commit" >&2; exit 2; }
short=${commit:0:10}
[ -z "$patch" ] || short=$short-$(sha256sum "$patch" | cut -c1-8)
base=${CARGO_TARGET_DIR:-$ROOT/target}/bench-base
bin=$base/efs-proxy-$short
if [ ! -x "$bin" ]; then
  tree=$base/src-$short
  [ -d "$tree" ] || git worktree add --detach "$tree" "$commit" >/dev/null
  [ -z "$patch" ] || git -C "$tree" apply "$patch"
  echo "compare: building efs-proxy at $rev ($short) in $tree" >&2
  # The shared target directory reuses every compiled dependency; the worktree's own crates
  # get other hashes (their path differs), and run.sh's build below puts this checkout's
  # binary back in place.
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  (cd "$tree" && CARGO_TARGET_DIR=$target cargo build --release --locked -p efs-proxy --bin efs-proxy)
  cp "$target/release/efs-proxy" "$bin.tmp" && mv "$bin.tmp" "$bin"
  git worktree remove --force "$tree"
fi
exec "$ROOT/tests/bench/run.sh" --only efs-proxy --no-multiplex --rounds 5 --baseline "$name=$bin" "$@"
