#!/bin/sh
# The container's main process (under tini): efs-proxy, the NFSv4.2 mount through it, and the
# WebDAV server that publishes the mount.
#
#   1. efs-proxy run --listen 127.0.0.1:20049 --target NLB_DNS:2049 --fs-id .. --region ..
#      [--az-id ..] --service s3files   (IAM credentials from the environment or ~/.aws);
#      waits for its "listening on" line
#   2. mount -t nfs4 -o nfsvers=4.2,port=20049,hard,... 127.0.0.1:/ /mnt/s3files
#   3. efs-webdav --listen 0.0.0.0:8080 --root /mnt/s3files; prints "entrypoint: ready"
#   4. SIGTERM/SIGINT: stop WebDAV, unmount (lazily if busy or hung), stop the proxy, exit 0.
#      If the proxy dies meanwhile it is restarted (the hard mount reconnects); if WebDAV dies
#      the container stops with status 1 (compose's restart policy brings it back).
#
# Every failure prints what failed and the likely fix. POSIX sh: runs under dash (the image)
# and busybox sh (the QEMU end-to-end test).
#
# Usage: entrypoint.sh            start (the image's CMD)
#        entrypoint.sh health     exit 0 if the mount answers and WebDAV listens (HEALTHCHECK)
#
# Environment:
#   NLB_DNS        where the proxy connects: the infra stack's NlbDns output (HOST or HOST:PORT;
#                  port 2049 if none)                                        required*
#   FS_ID          file system id, fs-...                                    required*
#   AWS_REGION     region of the file system (REGION is accepted too)        required*
#   AZ_ID          availability zone id of the mount target (e.g. cac1-az1): the TLS name is
#                  then {az_id}.{fs_id}.s3files.{region}.on.aws              optional
#   EFS_SERVICE    s3files (default) or efs
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_PROFILE, or ~/.aws
#                  mounted read-only at /root/.aws: the IAM identity with the client policy
#   EFS_PROXY_ARGS replaces the arguments after `efs-proxy run --listen 127.0.0.1:20049`
#                  (*then NLB_DNS, FS_ID, AWS_REGION are not needed). Tests use it for a test
#                  mount target: "--target H:P --server-name N --ca-file F --cert F --key F"
#   WEBDAV_LISTEN  default 0.0.0.0:8080 (docker publishes it on the host's 127.0.0.1 only)
#   WEBDAV_USER / WEBDAV_PASSWORD   optional basic authentication (passed to efs-webdav)
#   MOUNT_POINT    default /mnt/s3files
#   EFS_PROXY / EFS_WEBDAV          the binaries (default: efs-proxy / efs-webdav on PATH)
#   STATE_DIR      logs and pid files (default /run/s3files)
#   READY_TIMEOUT  seconds to wait for each server's "listening on" (default 30)
#   MOUNT_TIMEOUT  seconds the mount may take (default 90)
#   LOG_LEVEL      efs-proxy and efs-webdav log level (default info)
set -u

MOUNT_POINT=${MOUNT_POINT:-/mnt/s3files}
WEBDAV_LISTEN=${WEBDAV_LISTEN:-0.0.0.0:8080}
EFS_PROXY=${EFS_PROXY:-efs-proxy}
EFS_WEBDAV=${EFS_WEBDAV:-efs-webdav}
STATE_DIR=${STATE_DIR:-/run/s3files}
READY_TIMEOUT=${READY_TIMEOUT:-30}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-90}
LOG_LEVEL=${LOG_LEVEL:-info}
PROXY_LISTEN=127.0.0.1:20049

proxy_pid='' webdav_pid='' tee_pid='' sleep_pid='' mounted=0 stopping=0

log() { printf 'entrypoint: %s\n' "$*" >&2; }

# fail WHAT FIX: report, undo what was started, exit 1
fail() {
  log "error: $1"
  [ -z "${2:-}" ] || log "fix: $2"
  stop_all
  exit 1
}

is_number() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# ---------------------------------------------------------------------------------------
# health: the mount answers within 5 s, and something listens on WebDAV's port.
health() {
  grep -q " $MOUNT_POINT nfs4 " /proc/mounts || { echo "not mounted: $MOUNT_POINT"; return 1; }
  timeout -s KILL 5 stat "$MOUNT_POINT" >/dev/null 2>&1 || { echo "mount does not answer: $MOUNT_POINT"; return 1; }
  port=${WEBDAV_LISTEN##*:}
  hex=$(printf '%04X' "$port")
  # /proc/net/tcp{,6}: local_address is ADDR:PORT in hex, state 0A is LISTEN
  if ! awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
    echo "WebDAV does not listen on port $port"
    return 1
  fi
  echo "ok: $MOUNT_POINT mounted, WebDAV on port $port"
}

if [ "${1:-}" = health ]; then
  health
  exit $?
fi
[ $# -eq 0 ] || { log "error: unknown arguments: $* (usage: entrypoint.sh [health])"; exit 2; }

# ---------------------------------------------------------------------------------------
# The proxy's command line.
proxy_args() {
  if [ -n "${EFS_PROXY_ARGS:-}" ]; then
    log "EFS_PROXY_ARGS is set: efs-proxy run --listen $PROXY_LISTEN $EFS_PROXY_ARGS"
    return 0
  fi
  region=${AWS_REGION:-${REGION:-}}
  [ -n "${NLB_DNS:-}" ] || fail "NLB_DNS is not set" \
    "pass the NLB's DNS name (the infra stack's NlbDns output): docker-mount.sh up NLB_DNS, or -e NLB_DNS=..."
  [ -n "${FS_ID:-}" ] || fail "FS_ID is not set" \
    "pass the file system id (the infra stack's FileSystemId output, fs-...): --fs-id or -e FS_ID=..."
  [ -n "$region" ] || fail "AWS_REGION is not set" \
    "pass the file system's region (the infra stack's Region output): --region or -e AWS_REGION=..."
  case $FS_ID in
    fs-[0-9a-f]*) ;;
    *) fail "FS_ID '$FS_ID' is not a file system id" "use the id (fs-0123456789abcdef0), not the ARN or the bucket name" ;;
  esac
  case $region in
    [a-z][a-z]-*-[0-9]*) ;;
    *) fail "AWS_REGION '$region' is not a region name" "use e.g. us-east-1 or ca-central-1" ;;
  esac
  case ${AZ_ID:-} in
    '' | *-az[0-9]*) ;;
    *) fail "AZ_ID '$AZ_ID' is not an availability zone id" "use the zone id (e.g. use1-az4, the infra stack's MountTargetAzId output), not its name (us-east-1a)" ;;
  esac
  case $NLB_DNS in
    *:*) target=$NLB_DNS ;;
    *) target=$NLB_DNS:2049 ;;
  esac
  if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ] &&
    [ ! -f "${HOME:-/root}/.aws/credentials" ] && [ ! -f "${HOME:-/root}/.aws/config" ]; then
    log "warning: no AWS credentials in the environment and no ${HOME:-/root}/.aws; pass AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or mount ~/.aws read-only at /root/.aws (docker-mount.sh does); trying the instance metadata service"
  fi
  set -- --target "$target" --fs-id "$FS_ID" --region "$region" --service "${EFS_SERVICE:-s3files}"
  [ -z "${AZ_ID:-}" ] || set -- "$@" --az-id "$AZ_ID"
  NATIVE_ARGS="$*"
  log "efs-proxy run --listen $PROXY_LISTEN $NATIVE_ARGS"
}

# The proxy's stderr goes through a FIFO to tee: into the container's log at once, and into
# efs-proxy.log, which diagnose reads.
start_proxy() {
  : >"$STATE_DIR/efs-proxy.out"
  fifo=$STATE_DIR/efs-proxy.fifo
  rm -f "$fifo"
  mkfifo "$fifo" || fail "cannot create $fifo" "check that $STATE_DIR is writable"
  tee -a "$STATE_DIR/efs-proxy.log" <"$fifo" >&2 &
  tee_pid=$!
  # EFS_PROXY_ARGS / NATIVE_ARGS are split into words on purpose (no value contains spaces).
  # shellcheck disable=SC2086
  if [ -n "${EFS_PROXY_ARGS:-}" ]; then
    "$EFS_PROXY" run --log-level "$LOG_LEVEL" --listen "$PROXY_LISTEN" $EFS_PROXY_ARGS \
      >"$STATE_DIR/efs-proxy.out" 2>"$fifo" </dev/null &
  else
    "$EFS_PROXY" run --log-level "$LOG_LEVEL" --listen "$PROXY_LISTEN" $NATIVE_ARGS \
      >"$STATE_DIR/efs-proxy.out" 2>"$fifo" </dev/null &
  fi
  proxy_pid=$!
}

# wait_listening NAME PID OUTFILE: until OUTFILE has "listening on ...", PID dies or timeout
wait_listening() {
  n=0
  while ! grep -q '^listening on ' "$3" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || return 1
    n=$((n + 1))
    [ "$n" -le $((READY_TIMEOUT * 10)) ] || return 2
    sleep 0.1
  done
}

# Advice from the proxy's log (its messages name the layer that failed) and mount's stderr.
diagnose() {
  plog=$STATE_DIR/efs-proxy.log
  merr=$STATE_DIR/mount.err
  if grep -qi 'credential' "$plog" 2>/dev/null; then
    log "fix: no usable AWS credentials: pass AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (+AWS_SESSION_TOKEN) or AWS_PROFILE with ~/.aws mounted at /root/.aws; check they are not expired (aws sts get-caller-identity)"
  elif grep -q 'layer=dns' "$plog" 2>/dev/null; then
    log "fix: the target name does not resolve: check NLB_DNS (the infra stack's NlbDns output) and the container's DNS"
  elif grep -q 'layer=tcp' "$plog" 2>/dev/null; then
    log "fix: TCP 2049 to $(printf '%s' "${NLB_DNS:-the target}") is not reachable: the NLB's security group must allow your public IP (infra context allowedCidr; curl -s https://checkip.amazonaws.com), and the region must be the stack's"
  elif grep -q 'layer=tls' "$plog" 2>/dev/null; then
    log "fix: TLS to the mount target failed: check FS_ID, AZ_ID and AWS_REGION (the server name is {az_id}.{fs_id}.s3files.{region}.on.aws) and the system clock"
  elif grep -q 'layer=bind' "$plog" 2>/dev/null; then
    log "fix: the mount target did not accept the connection: check FS_ID and that the IAM identity has the client policy (the infra stack's ClientPolicyArn: s3files:ClientMount, ClientWrite)"
  fi
  if grep -qi 'operation not permitted\|permission denied' "$merr" 2>/dev/null; then
    if grep -q 'bind: READY' "$plog" 2>/dev/null; then
      log "fix: the file system refused the mount: attach the client policy (ClientPolicyArn) to the IAM identity, and check FS_ID"
    else
      log "fix: the container may not mount: run it with --cap-add SYS_ADMIN (docker-mount.sh and docker-compose.yml do), plus --security-opt apparmor=unconfined on AppArmor hosts, or --privileged"
    fi
  elif grep -qi 'no such device\|unknown filesystem type' "$merr" 2>/dev/null; then
    log "fix: the kernel has no NFSv4 client (modprobe nfs on the Docker host, or use Docker Desktop's VM kernel)"
  fi
}

# ---------------------------------------------------------------------------------------
# Shutdown: WebDAV first (no new writes), then the mount (its dirty data still goes through
# the proxy), then the proxy.
stop_pid() { # stop_pid PID SECONDS
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  n=0
  while kill -0 "$1" 2>/dev/null && [ "$n" -lt $(($2 * 10)) ]; do
    sleep 0.1
    n=$((n + 1))
  done
  if kill -0 "$1" 2>/dev/null; then
    log "pid $1 did not stop within $2 s; killing it"
    kill -KILL "$1" 2>/dev/null
  fi
  wait "$1" 2>/dev/null
  return 0
}

unmount() {
  grep -q " $MOUNT_POINT nfs4 " /proc/mounts || return 0
  if timeout -s KILL 30 umount "$MOUNT_POINT" 2>/dev/null; then
    log "unmounted $MOUNT_POINT"
  elif timeout -s KILL 10 umount -f "$MOUNT_POINT" 2>/dev/null; then
    log "unmounted $MOUNT_POINT (forced: the server did not answer)"
  else
    umount -l "$MOUNT_POINT" 2>/dev/null && log "unmounted $MOUNT_POINT lazily (it was busy)"
  fi
}

stop_all() {
  stopping=1
  [ -z "$sleep_pid" ] || kill "$sleep_pid" 2>/dev/null
  stop_pid "$webdav_pid" 15
  webdav_pid=''
  [ "$mounted" = 0 ] || unmount
  mounted=0
  stop_pid "$proxy_pid" 10
  proxy_pid=''
  # tee ends with the proxy (end of file on the FIFO)
  [ -z "$tee_pid" ] || wait "$tee_pid" 2>/dev/null
  tee_pid=''
}

on_signal() {
  [ "$stopping" = 0 ] || return 0
  log "$1: stopping WebDAV, unmounting, stopping the proxy"
  stop_all
  log "stopped"
  exit 0
}
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGINT' INT

# ---------------------------------------------------------------------------------------
for v in READY_TIMEOUT MOUNT_TIMEOUT; do
  eval "val=\$$v"
  # shellcheck disable=SC2154  # val is set by the eval above
  is_number "$val" || { log "error: $v must be a number of seconds (got '$val')"; exit 2; }
done
command -v "$EFS_PROXY" >/dev/null 2>&1 || fail "efs-proxy not found ($EFS_PROXY)" "set EFS_PROXY to the binary's path"
command -v "$EFS_WEBDAV" >/dev/null 2>&1 || fail "efs-webdav not found ($EFS_WEBDAV)" "set EFS_WEBDAV to the binary's path"
mkdir -p "$STATE_DIR" "$MOUNT_POINT" || fail "cannot create $STATE_DIR or $MOUNT_POINT" "check the container's file system"
: >"$STATE_DIR/efs-proxy.log"

NATIVE_ARGS=''
proxy_args
start_proxy

wait_listening efs-proxy "$proxy_pid" "$STATE_DIR/efs-proxy.out"
case $? in
  0) log "efs-proxy listening on $PROXY_LISTEN" ;;
  1)
    wait "$tee_pid" 2>/dev/null # the proxy's last words are in the log
    fail "efs-proxy exited at start (its error is above)" "fix the argument or credential it names"
    ;;
  *) fail "efs-proxy did not print 'listening on' within ${READY_TIMEOUT}s" "see its log above; READY_TIMEOUT raises the limit" ;;
esac

log "mount -t nfs4 -o nfsvers=4.2,port=20049,hard,timeo=600,retrans=2,noresvport,rsize=1048576,wsize=1048576 127.0.0.1:/ $MOUNT_POINT"
if ! timeout -s KILL "$MOUNT_TIMEOUT" mount -t nfs4 -o nfsvers=4.2,port=20049,hard,timeo=600,retrans=2,noresvport,rsize=1048576,wsize=1048576 127.0.0.1:/ "$MOUNT_POINT" 2>"$STATE_DIR/mount.err"; then
  cat "$STATE_DIR/mount.err" >&2
  diagnose
  fail "the NFS mount of 127.0.0.1:/ (through efs-proxy) failed or took over ${MOUNT_TIMEOUT}s" \
    "see the proxy's messages above (layer=dns|tcp|tls|bind name the failing step)"
fi
mounted=1
log "mounted $MOUNT_POINT"

# WebDAV gets only its own settings from the environment (WEBDAV_USER/WEBDAV_PASSWORD).
"$EFS_WEBDAV" --log-level "$LOG_LEVEL" --listen "$WEBDAV_LISTEN" --root "$MOUNT_POINT" \
  >"$STATE_DIR/efs-webdav.out" </dev/null &
webdav_pid=$!
wait_listening efs-webdav "$webdav_pid" "$STATE_DIR/efs-webdav.out" ||
  fail "efs-webdav did not start (its error is above)" "check WEBDAV_LISTEN ($WEBDAV_LISTEN), WEBDAV_USER/WEBDAV_PASSWORD"
log "WebDAV on $(sed -n 's/^listening on //p' "$STATE_DIR/efs-webdav.out") serving $MOUNT_POINT"
echo "entrypoint: ready"

# Supervise until a signal: restart a dead proxy (the hard mount reconnects to it), stop on a
# dead WebDAV server.
restarts=0
while :; do
  sleep 2 &
  sleep_pid=$!
  wait "$sleep_pid" 2>/dev/null
  sleep_pid=''
  if ! kill -0 "$webdav_pid" 2>/dev/null; then
    wait "$webdav_pid" 2>/dev/null
    fail "efs-webdav exited (status $?)" "see its messages above; the container's restart policy starts it again"
  fi
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    restarts=$((restarts + 1))
    log "efs-proxy exited; restarting it (restart $restarts); NFS requests wait meanwhile (hard mount)"
    start_proxy
    wait_listening efs-proxy "$proxy_pid" "$STATE_DIR/efs-proxy.out" ||
      log "efs-proxy did not come back; retrying in 2 s"
  fi
done
