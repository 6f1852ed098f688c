#!/usr/bin/env bash
# The kernel NFS client's writes survive connection faults through efs-proxy:
#
#   Linux 6.1 kernel NFSv4.2 client (QEMU guest), hard mount
#     └─ 10.0.2.2:P (slirp: host 127.0.0.1:P)
#   efs-proxy on 127.0.0.1:P ── TLS + client certificate + bind ──► fake mount target
#     on 127.0.0.1:T, relaying to nfs-ganesha on 127.0.0.1:G (FSAL_VFS, export DIR/export)
#
# The guest (tests/harness/guest-test-reconnect.sh) writes 32 MiB twice over one mount; during
# each write the host breaks the path:
#   proxy-restart  the proxy is killed with SIGKILL and restarted on the same port 1 s later
#   target-reset   `ss -K` resets the fake mount target's accepted connections (server side,
#                  127.0.0.1:T)
# Each write must finish with the sha256 intact (in the guest after a remount, and on the host
# in ganesha's export), and the guest's /proc/self/mountstats must show that the transport
# reconnected (connect_count grew during that write).
#
# Mount options: hard,timeo=20,retrans=5. `hard`: a write is never failed, only delayed, so
# the test checks recovery rather than an EIO. The short timeo bounds how long recovery can
# take: over TCP the client's longest RPC timeout is timeo × (retrans + 1) = 12 s (defaults
# timeo=600,retrans=2: 180 s); since Linux 4.8 that value also caps the back-off between
# reconnect attempts (it starts at 3 s and doubles after each refused attempt, as while the
# proxy is down), and the transport's TCP_USER_TIMEOUT is derived from the same numbers. The
# reconnect itself is not driven by timeo: the proxy closes the client's connection, and the
# client reconnects and resends at once. With outages this short, plain `hard` recovered as
# fast (measured: 2.2 s after the restart, 0.1 s after the reset); with longer ones the
# defaults let the back-off grow to minutes.
#
#   tests/e2e/kernel-faults.sh        (root; run tests/harness/install-deps.sh once)
#
# env: BIN_DIR (default: $CARGO_TARGET_DIR or ./target, /debug; E2E_PROFILE=release) holds
#      efs-proxy and fake-mount-target; NFS_MB (32) per write; NFS_OPTS (hard,timeo=20,retrans=5);
#      FAULT_AFTER (1 s after TRANSFER-START); DOWN_FOR (1 s the proxy stays down); GUEST_PACE
#      (100 ms per MiB fed to the guest's writer); KVMNFS_TIMEOUT (150); anything run-guest.sh
#      reads.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=kernel-faults  # log prefix used by lib.sh
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_root
need_cmd ganesha.nfsd nfs-ganesha
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd ss iproute2

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/${E2E_PROFILE:-debug}}
for bin in efs-proxy fake-mount-target; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin not found: run 'cargo build --workspace --bins' first" 2
done
SERVER_NAME=fs-0123456789abcdef0.s3files.us-east-1.on.aws
MB=${NFS_MB:-32}
FAULT_AFTER=${FAULT_AFTER:-1}
DOWN_FOR=${DOWN_FOR:-1}
export NFS_OPTS=${NFS_OPTS:-hard,timeo=20,retrans=5}

t0=$(now)
e2e_workdir efs-kfaults
GDIR=$TMP/ganesha
SERIAL=$TMP/serial.log
target='' proxy='' proxy_pid=''  # set below
# shellcheck disable=SC2317  # called by e2e_cleanup
e2e_teardown() { "$HARNESS_DIR/ganesha.sh" stop "$GDIR" 2>/dev/null; }

step() { printf '\n== %s\n' "$*"; }
# wait_serial REGEX SECONDS: wait for a console line matching REGEX; print it.
wait_serial() {
  local deadline=$((SECONDS + $2)) line
  while :; do
    line=$(grep -m1 -E "$1" "$SERIAL" 2>/dev/null || true)
    [ -z "$line" ] || { printf '%s\n' "$line"; return 0; }
    kill -0 "$guest_pid" 2>/dev/null || die "the guest ended before '$1' (see $TMP/guest.out)"
    [ "$SECONDS" -lt "$deadline" ] || die "no '$1' on the guest console within $2 s"
    sleep 0.05
  done
}
# wait_count FILE REGEX N SECONDS: wait until FILE has more than N lines matching REGEX.
count() { grep -cE "$2" "$1" 2>/dev/null || true; }
wait_count() {
  local deadline=$((SECONDS + $4)) n
  while n=$(count "$1" "$2"); [ "${n:-0}" -le "$3" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
# mid_write NAME PHASE: the fault must come while the write is under way.
mid_write() {
  local size
  ! grep -q "TRANSFER-DONE $2 " "$SERIAL" || die "$2: the write finished before the fault; raise NFS_MB or GUEST_PACE"
  size=$(stat -c %s "$GDIR/export/$1" 2>/dev/null || echo 0)
  echo "$2: fault with $((size / 1048576)) of $MB MiB in ganesha's export"
}

results=()
result() { results+=("$*"); echo "RESULT $*"; }

step "nfs server: nfs-ganesha (NFSv4.2, FSAL_VFS)"
gport=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR" "$gport" VFS >/dev/null
echo "ganesha on 127.0.0.1:$gport, export $GDIR/export"

step "mount target: fake-mount-target (TLS, client certificate required, bind READY, relay to ganesha)"
start_listener target target "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki" --server-name "$SERVER_NAME" --bind ready --backend "127.0.0.1:$gport"
tport=${target##*:}
echo "mount target on $target"

step "proxy: efs-proxy run on a fixed port (it is restarted on the same one)"
pport=$(free_port)
proxy_cmd=("$BIN_DIR/efs-proxy" run --listen "127.0.0.1:$pport" --target "$target"
  --server-name "$SERVER_NAME" --ca-file "$TMP/pki/ca.pem" --cert "$TMP/pki/client.pem"
  --key "$TMP/pki/client.key")
start_listener proxy proxy1 "${proxy_cmd[@]}"
proxy_pid=$last_pid
echo "efs-proxy on $proxy (pid $proxy_pid)"

step "nfs client: Linux kernel in QEMU, mount -o nfsvers=4.2,port=$pport,$NFS_OPTS; two ${MB} MiB writes"
SERIAL_LOG=$SERIAL NFS_PORT=$pport NFS_MB=$MB KVMNFS_TIMEOUT=${KVMNFS_TIMEOUT:-150} \
  KVMNFS_GUEST_TEST=$HARNESS_DIR/guest-test-reconnect.sh \
  KVMNFS_APPEND="nfsphases=proxy-restart,target-reset nfspace=${GUEST_PACE:-100} ${KVMNFS_APPEND:-}" \
  "$HARNESS_DIR/run-guest.sh" >"$TMP/guest.out" 2>&1 &
guest_pid=$!

step "fault 1: SIGKILL the proxy mid-write, restart it on 127.0.0.1:$pport after ${DOWN_FOR} s"
wait_serial 'TRANSFER-START proxy-restart' 120
sleep "$FAULT_AFTER"
mid_write proxy-restart.bin proxy-restart
kill -KILL "$proxy_pid"
t_kill=$(now)
wait "$proxy_pid" 2>/dev/null || true
proxy_pid=''
sleep "$DOWN_FOR"
start_listener proxy proxy2 "${proxy_cmd[@]}"
proxy_pid=$last_pid
t_restart=$(now)
echo "proxy killed, restarted after $(elapsed "$t_kill" "$t_restart") s (pid $proxy_pid)"
wait_count "$TMP/proxy2.log" 'forwarding' 0 60 || die "proxy-restart: the client did not reconnect within 60 s"
reconnect1=$(elapsed "$t_restart")
echo "the kernel client reconnected ${reconnect1} s after the restart"
done1=$(wait_serial 'TRANSFER-DONE proxy-restart' 100)
echo "$done1"

step "fault 2: ss -K on the mount target's accepted connections (127.0.0.1:$tport) mid-write"
wait_serial 'TRANSFER-START target-reset' 60
sleep "$FAULT_AFTER"
mid_write target-reset.bin target-reset
binds=$(count "$TMP/proxy2.log" forwarding)
t_reset=$(now)
killed=$(ss -K -Htn state established "( src 127.0.0.1 and sport = :$tport )")
[ -n "$killed" ] || die "target-reset: ss -K found no established connection on 127.0.0.1:$tport"
echo "reset $(wc -l <<<"$killed") connection(s) of the mount target"
wait_count "$TMP/proxy2.log" 'forwarding' "$binds" 60 || die "target-reset: the client did not reconnect within 60 s"
reconnect2=$(elapsed "$t_reset")
echo "the kernel client reconnected ${reconnect2} s after the reset"
done2=$(wait_serial 'TRANSFER-DONE target-reset' 100)
echo "$done2"

step "verdict: guest (remount + sha256) and host (ganesha's export)"
rc=0
wait "$guest_pid" || rc=$?
guest_pid=''
grep -E 'KVMNFS-(RECONNECT|SHA256|PASS|FAIL)|xprt:|run-guest|not responding|OK$' "$TMP/guest.out" || true
[ "$rc" = 0 ] || die "the guest test failed (run-guest.sh exit $rc)" "$rc"
for phase in proxy-restart target-reset; do
  line=$(grep -o "KVMNFS-SHA256 [0-9a-f]\{64\} $phase.bin" "$TMP/guest.out") ||
    die "$phase: no KVMNFS-SHA256 line from the guest"
  read -r _ want name <<<"$line"
  got=$(sha256sum "$GDIR/export/$name" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "$phase: host has sha256 $got in $GDIR/export/$name, the guest wrote $want"
  counts=$(sed -n "s/.*KVMNFS-RECONNECT $phase connect_count=\([0-9]*->[0-9]*\).*/\1/p" "$TMP/guest.out")
  if [ -z "$counts" ] || [ "${counts#*->}" -le "${counts%->*}" ]; then
    die "$phase: the guest's transport did not reconnect during the write (connect_count $counts)"
  fi
  took=$(sed -n "s/.*TRANSFER-DONE $phase .*took=\([0-9.]*\).*/\1/p" "$TMP/guest.out")
  case $phase in
  proxy-restart) how="proxy down $(elapsed "$t_kill" "$t_restart")s, client back ${reconnect1}s after the restart" ;;
  target-reset) how="client back ${reconnect2}s after the reset" ;;
  esac
  result "$phase: ${MB} MiB write took ${took}s; $how; guest connect_count $counts; sha256 intact in the guest and in ganesha's export"
done
grep -q 'server side failed\|server closed the connection' "$TMP/proxy2.log" ||
  die "target-reset: the proxy did not log the server-side failure"

step "results"
printf '%s\n' "${results[@]}"
log "PASS in $(elapsed "$t0") s"
