#!/usr/bin/env bash
# Self-test of the e2e harness with a stand-in proxy:
#
#   guest kernel NFSv4.2 client --slirp--> socat 127.0.0.1:P --> ganesha 127.0.0.1:G (VFS)
#
# Starts ganesha (temp dir, free port) and `socat TCP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr
# TCP:127.0.0.1:G` in place of efs-proxy, runs run-guest.sh against socat's port with
# EXPORT_DIR set (so the file is also checked on the host), and cleans everything up on exit.
# This is also the template for the real test: replace the socat line with the proxy.
#
#   tests/harness/e2e-socat-selftest.sh        exit status as run-guest.sh (0 = PASS)
#
# env: anything run-guest.sh reads (NFS_OPTS, NFS_MB, KVMNFS_TIMEOUT, KVMNFS_WORK, ...);
#      KVMNFS_KEEP=1 also keeps the temp dir (ganesha logs, export).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_root
need_cmd socat
need_cmd ganesha.nfsd nfs-ganesha

t0=$(now)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/efs-e2e-selftest.XXXXXX")
GDIR=$TMP/ganesha
socat_pid=
guest_pid=
# shellcheck disable=SC2317  # called through the trap
cleanup() {
  local rc=$?
  if [ -n "$guest_pid" ] && kill -0 "$guest_pid" 2>/dev/null; then
    kill -TERM "$guest_pid" 2>/dev/null || true   # run-guest.sh kills its QEMU on SIGTERM
    wait "$guest_pid" 2>/dev/null || true
  fi
  if [ -n "$socat_pid" ]; then
    # socat forks a child per connection: stop the whole process group (setsid below)
    kill -TERM -- "-$socat_pid" 2>/dev/null || true
    wait "$socat_pid" 2>/dev/null || true
  fi
  "$HARNESS_DIR/ganesha.sh" stop "$GDIR" || log "could not stop ganesha (pid file $GDIR/ganesha.pid)"
  if [ "${KVMNFS_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "kept $TMP (ganesha.log, export/) for inspection; remove it when done"
  else
    rm -rf "$TMP"
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gport=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR" "$gport" VFS >/dev/null
log "ganesha (VFS, export $GDIR/export) on 127.0.0.1:$gport"

pport=$(free_port)
while [ "$pport" = "$gport" ]; do pport=$(free_port); done
# setsid: socat gets its own process group, so the cleanup can kill it with its children
setsid socat "TCP-LISTEN:$pport,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$gport" </dev/null &
socat_pid=$!
wait_port "$pport" 5 || die "socat did not listen on 127.0.0.1:$pport within 5 s"
log "stand-in proxy: socat 127.0.0.1:$pport -> 127.0.0.1:$gport (setup $(elapsed "$t0") s)"

# in the background + wait, so that SIGINT/SIGTERM reach our trap at once
NFS_PORT=$pport EXPORT_DIR=$GDIR/export "$HARNESS_DIR/run-guest.sh" &
guest_pid=$!
rc=0
wait "$guest_pid" || rc=$?
guest_pid=
if [ "$rc" = 0 ]; then
  log "PASS in $(elapsed "$t0") s (whole self-test)"
else
  log "FAIL (run-guest.sh exit $rc) after $(elapsed "$t0") s; ganesha log: $GDIR/ganesha.log"
fi
exit "$rc"
