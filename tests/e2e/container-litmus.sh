#!/usr/bin/env bash
# The litmus WebDAV compliance suite (Debian's litmus 0.13), all five groups (basic, copymove,
# props, locks, http), against efs-webdav on 127.0.0.1 serving a scratch directory, with basic
# authentication on. Every group must pass 100 %, and the served directory must hold nothing
# but litmus' own empty collection afterwards: no property or lock sidecar files (they would
# be S3 objects behind S3 Files).
#
#   tests/e2e/container-litmus.sh       (litmus: tests/harness/install-deps.sh, or apt-get install litmus)
#
# env: BIN_DIR (default ${CARGO_TARGET_DIR:-target}/debug) holds efs-webdav;
#      LITMUS_TESTS (default "basic copymove props locks http").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=container-litmus
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_cmd litmus litmus

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
[ -x "$BIN_DIR/efs-webdav" ] || die "$BIN_DIR/efs-webdav not found: run 'cargo build -p efs-webdav' first (or set BIN_DIR)" 2
SUITES=${LITMUS_TESTS:-basic copymove props locks http}

t0=$(now)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/efs-litmus.XXXXXX")
mkdir "$TMP/root"
server=''
# shellcheck disable=SC2317  # called through the trap
cleanup() {
  local rc=$?
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    log "FAILED; logs kept in $TMP (litmus.log, debug.log, webdav.log)"
  else
    rm -rf "$TMP"
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WEBDAV_USER=someuser WEBDAV_PASSWORD=somepass \
  "$BIN_DIR/efs-webdav" --listen 127.0.0.1:0 --root "$TMP/root" \
  >"$TMP/webdav.out" 2>"$TMP/webdav.log" </dev/null &
server=$!
addr=  # set by await_listening
await_listening addr webdav "$server"
log "efs-webdav on $addr serving $TMP/root (basic auth); litmus $(litmus --version | head -n 1): $SUITES"

# litmus writes debug.log into the current directory.
(cd "$TMP" && TESTS=$SUITES timeout 300 litmus -k "http://$addr/" someuser somepass >"$TMP/litmus.log" 2>&1) || true
grep -E '^<- summary' "$TMP/litmus.log" || true
failed=0
for suite in $SUITES; do
  line=$(grep -E "^<- summary for \`$suite'" "$TMP/litmus.log" || true)
  if ! [[ $line =~ tests\ run:\ ([0-9]+)\ passed,\ 0\ failed\.\ 100\.0% ]]; then
    log "litmus $suite: ${line:-no summary (crashed?)}"
    grep -E '^ *[0-9]+\..*(FAIL|fail)' "$TMP/litmus.log" | sed 's/^/    /' >&2 || true
    failed=1
  fi
done
[ "$failed" = 0 ] || die "litmus did not pass 100 % (full output: $TMP/litmus.log)"

# litmus leaves its (empty) collection /litmus/ behind; anything else is a leak.
leftover=$(find "$TMP/root" -mindepth 1 ! -path "$TMP/root/litmus" | sed -n 1,5p)
[ -z "$leftover" ] || die "files left in the served directory after litmus: $leftover"
log "PASS: litmus $SUITES all 100 %, served directory clean, in $(elapsed "$t0") s"
