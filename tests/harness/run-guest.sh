#!/usr/bin/env bash
# Boot a QEMU guest (TCG) whose Linux 6.1 kernel NFS client mounts the HOST's 127.0.0.1:NFS_PORT
# with NFSv4.2 and runs a data test (guest-test.sh by default).  The caller starts whatever
# listens on NFS_PORT (normally efs-proxy, in front of ganesha) -- this script starts nothing
# but QEMU.  Guest 10.0.2.2 is the host's 127.0.0.1 through QEMU user-mode networking (slirp),
# so no tap device, bridge or host network change is needed; the proxy sees connections from
# 127.0.0.1.
#
#   NFS_PORT=20049 [EXPORT_DIR=/srv/g/export] tests/harness/run-guest.sh
#   tests/harness/run-guest.sh 20049                     (the port may also be given as $1)
#
# Exit status: 0  guest printed KVMNFS-PASS, and the host-side check matched (if requested)
#              1  guest printed KVMNFS-FAIL, or the host-side check failed
#              2  setup error (bad arguments, missing packages, nothing listening on NFS_PORT,
#                 guest build failed)
#              3  no result: guest timed out (killed) or QEMU died
# stdout: the guest's serial console, each line prefixed with "[host SSS.ss]" (seconds since
#         QEMU start), then "KVMNFS-TIMING ...", "KVMNFS-HOST ..." (host-side check) and, on
#         success, "[run-guest] PASS: ...".  Progress and failure reasons go to stderr.
#
# env:
#   NFS_PORT           host TCP port the guest mounts (required, unless given as $1)
#   EXPORT_DIR         optional: host directory that is the server's export (for ganesha.sh:
#                      DIR/export).  Then the file named in the guest's "KVMNFS-SHA256 <hex>
#                      <name>" line must exist there with the same sha256.
#   NFS_OPTS           extra mount options, comma-separated, no spaces (e.g. soft,timeo=50)
#   NFS_FILE           file name the guest writes (default e2e-16m.bin)
#   NFS_MB             size in MiB (default 16)
#   NFS_MOUNT_TIMEOUT  seconds the guest lets each mount take before KVMNFS-FAIL (default 60;
#                      0 = wait forever, i.e. until KVMNFS_TIMEOUT)
#   KVMNFS_TIMEOUT     hard limit for the QEMU run in seconds (default 240; SIGTERM, then
#                      SIGKILL 5 s later)
#   KVMNFS_MEM         guest memory (default 512M)
#   KVMNFS_ACCEL       tcg (default) or kvm.  KVM does not work on the PVM sandbox hosts here
#                      (a stock kernel hangs or QEMU aborts), so only set it on a real VMX/SVM host.
#   KVMNFS_APPEND      extra kernel command-line words (key=value reach the guest as env vars)
#   KVMNFS_HOSTFWD     extra options of the guest's `-netdev user` (default none), e.g.
#                      hostfwd=tcp:127.0.0.1:18080-:8080 (host port 18080 -> guest port 8080)
#   KVMNFS_GUEST_TEST  guest script to run as /test.sh instead of guest-test.sh
#   GUEST_EXTRA_FILES  "hostpath:guestpath ..." copied into the initramfs (see build-guest.sh)
#   GUEST_MODULES      extra guest kernel modules (see build-guest.sh)
#   SERIAL_LOG         copy of the timestamped console (default $KVMNFS_WORK/serial.log; set a
#                      per-run path when several guests run at once)
#   KVMNFS_WORK        kernel/initramfs cache (default /var/tmp/efs-proxy-kvm)
#   KVMNFS_PORTCHECK   1 (default): fail early if nothing LISTENs on NFS_PORT (checked with ss,
#                      no connection is made); 0: skip (e.g. a listener started later)
#   KVMNFS_KEEP        1: keep the per-run directory (initrd) for debugging
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

PORT=${1:-${NFS_PORT:-}}
NAME=${NFS_FILE:-e2e-16m.bin}
MB=${NFS_MB:-16}
TIMEOUT=${KVMNFS_TIMEOUT:-240}
SERIAL_LOG=${SERIAL_LOG:-$KVMNFS_WORK/serial.log}
ACCEL=${KVMNFS_ACCEL:-tcg}

# ---- argument checks (exit 2) ----
[ $# -le 1 ] || die "usage: NFS_PORT=PORT [EXPORT_DIR=DIR] $0  (or: $0 PORT)" 2
if ! [[ $PORT =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
  die "NFS_PORT must be a TCP port number (got '$PORT'); usage: NFS_PORT=PORT [EXPORT_DIR=DIR] $0" 2
fi
[[ $NAME =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] || die "NFS_FILE '$NAME': use a plain file name ([A-Za-z0-9._-])" 2
[[ $MB =~ ^[1-9][0-9]*$ ]] || die "NFS_MB must be a positive integer (got '$MB')" 2
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "KVMNFS_TIMEOUT must be seconds (got '$TIMEOUT')" 2
MOUNT_TIMEOUT=${NFS_MOUNT_TIMEOUT:-60}
[[ $MOUNT_TIMEOUT =~ ^[0-9]+$ ]] || die "NFS_MOUNT_TIMEOUT must be seconds (got '$MOUNT_TIMEOUT')" 2
case ${NFS_OPTS:-} in *[[:space:]]*) die "NFS_OPTS must not contain spaces (got '$NFS_OPTS')" 2 ;; esac
if [ -n "${EXPORT_DIR:-}" ] && [ ! -d "$EXPORT_DIR" ]; then
  die "EXPORT_DIR '$EXPORT_DIR' is not a directory" 2
fi
case $ACCEL in
tcg) accel=(-accel tcg -cpu max) ;;
kvm) accel=(-accel kvm -cpu host) ;;
*) die "KVMNFS_ACCEL must be tcg or kvm (got '$ACCEL')" 2 ;;
esac
need_root
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd timeout coreutils
need_cmd ss iproute2
if [ "${KVMNFS_PORTCHECK:-1}" = 1 ] && ! port_listening "$PORT"; then
  die "nothing listens on host TCP port $PORT: start the proxy (or ganesha) before $0 (check: ss -ltnp 'sport = :$PORT')" 2
fi

# ---- per-run directory and cleanup ----
RUN=$(mktemp -d "${TMPDIR:-/tmp}/efs-e2e-guest.XXXXXX")
qemu_pidfile=$RUN/qemu.pid
# shellcheck disable=SC2317  # called through the trap
cleanup() {
  local pid
  # normally QEMU has exited by now; this covers an interrupted run (Ctrl-C, kill)
  if [ -s "$qemu_pidfile" ] && pid=$(cat "$qemu_pidfile" 2>/dev/null) &&
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ "${KVMNFS_KEEP:-0}" = 1 ]; then log "kept run directory $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build (cached kernel, per-run initramfs) ----
t_start=$(now)
"$HARNESS_DIR/build-guest.sh" "$RUN" || die "guest build failed (see the messages above; cache: $KVMNFS_WORK)" 2
kernel=$KVMNFS_WORK/kernel/vmlinux
[ -f "$kernel" ] || kernel=$KVMNFS_WORK/kernel/vmlinuz
t_built=$(now)

# ---- boot ----
cmdline="console=ttyS0 panic=-1 quiet nfsport=$PORT nfsfile=$NAME nfsmb=$MB nfsmounttimeout=$MOUNT_TIMEOUT"
[ -z "${NFS_OPTS:-}" ] || cmdline+=" nfsopts=$NFS_OPTS"
[ -z "${KVMNFS_APPEND:-}" ] || cmdline+=" $KVMNFS_APPEND"
mkdir -p "$(dirname "$SERIAL_LOG")"
: > "$SERIAL_LOG"
log "booting guest ($ACCEL, ${KVMNFS_MEM:-512M}, timeout ${TIMEOUT}s): mount -t nfs4 -o nfsvers=4.2,port=$PORT${NFS_OPTS:+,$NFS_OPTS} 10.0.2.2:/ /mnt; console log $SERIAL_LOG"

# stamp: prefix each console line with the host-side seconds since QEMU start, write it to
# stdout, to $SERIAL_LOG and to this run's own copy $LOG, from which the verdict is taken
# (so runs sharing a SERIAL_LOG cannot confuse each other).  Pure bash: no fork per line.
LOG=$RUN/serial.log
stamp() {
  local t0=${EPOCHREALTIME/[.,]/} line d
  while IFS= read -r line || [ -n "$line" ]; do
    d=$((${EPOCHREALTIME/[.,]/} - t0))
    printf -v line '[host %3d.%02d] %s' $((d / 1000000)) $((d / 10000 % 100)) "${line%$'\r'}"
    printf '%s\n' "$line"
    printf '%s\n' "$line" >&3
    printf '%s\n' "$line" >&4
  done 3>>"$SERIAL_LOG" 4>>"$LOG"
}

# The pipeline runs in the background and we `wait` for it: a trapped SIGINT/SIGTERM then
# interrupts the wait at once and the EXIT trap kills QEMU (timeout(1) puts QEMU in its own
# process group, so terminal signals do not reach it directly).
# (The outer subshell's stderr is discarded only to drop bash's "Killed" job notices; QEMU's
# own messages go through the console pipe.)
(
  {
    rc=0
    timeout --kill-after=5 "$TIMEOUT" qemu-system-x86_64 "${accel[@]}" -machine q35 -smp 1 -m "${KVMNFS_MEM:-512M}" \
      -nodefaults -no-user-config -display none -monitor none -no-reboot -serial stdio \
      -pidfile "$qemu_pidfile" \
      -kernel "$kernel" -initrd "$RUN/initrd.gz" -append "$cmdline" \
      -netdev "user,id=n0${KVMNFS_HOSTFWD:+,$KVMNFS_HOSTFWD}" -device virtio-net-pci,netdev=n0,romfile= \
      </dev/null 2>&1 || rc=$?
    echo "$rc" > "$RUN/qemu.rc"
  } | stamp
) 2>/dev/null &
wait $! || true
qrc=$(cat "$RUN/qemu.rc" 2>/dev/null || echo unknown)
t_end=$(now)
echo "KVMNFS-TIMING accel=$ACCEL build=$(elapsed "$t_start" "$t_built")s guest=$(elapsed "$t_built" "$t_end")s total=$(elapsed "$t_start" "$t_end")s qemu_rc=$qrc"

# ---- verdict ----
sha_line=$(grep -o 'KVMNFS-SHA256 [0-9a-f]\{64\} [^ ]*' "$LOG" | tail -n 1 || true)
host_check() {   # prints a KVMNFS-HOST line; false if the export does not hold what the guest wrote
  local want name got
  [ -n "$sha_line" ] || { echo "KVMNFS-HOST no KVMNFS-SHA256 line from the guest: nothing to check"; return 1; }
  read -r _ want name <<<"$sha_line"
  if [ ! -f "$EXPORT_DIR/$name" ]; then
    echo "KVMNFS-HOST $EXPORT_DIR/$name does not exist (EXPORT_DIR wrong, or the write never reached the server)"
    return 1
  fi
  got=$(sha256sum "$EXPORT_DIR/$name" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    echo "KVMNFS-HOST sha256 MISMATCH: guest wrote $want, host has $got in $EXPORT_DIR/$name"
    return 1
  fi
  echo "KVMNFS-HOST $EXPORT_DIR/$name has the sha256 the guest wrote ($want)"
}

if grep -q 'KVMNFS-FAIL' "$LOG"; then
  [ -z "${EXPORT_DIR:-}" ] || host_check || true   # for diagnosis only
  echo "[run-guest] FAILED: $(grep -o 'KVMNFS-FAIL.*' "$LOG" | head -n 1)" >&2
  echo "[run-guest] full console log: $SERIAL_LOG; check the listener on 127.0.0.1:$PORT (proxy/ganesha logs)" >&2
  exit 1
fi
if ! grep -q 'KVMNFS-PASS' "$LOG"; then
  if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    why="guest killed after the ${TIMEOUT}s timeout (KVMNFS_TIMEOUT); a common cause is a hard NFS mount waiting for a server that does not answer"
  else
    why="QEMU exited (rc=$qrc) without a KVMNFS-PASS/FAIL line (see its messages in the console log)"
  fi
  echo "[run-guest] NO RESULT: $why" >&2
  echo "[run-guest] last console lines (full log: $SERIAL_LOG):" >&2
  tail -n 15 "$LOG" >&2
  exit 3
fi
if [ -n "${EXPORT_DIR:-}" ]; then
  host_check || { echo "[run-guest] FAILED: host-side check of EXPORT_DIR=$EXPORT_DIR" >&2; exit 1; }
fi
echo "[run-guest] PASS: $(grep -o 'KVMNFS-PASS.*' "$LOG" | tail -n 1)"
exit 0
