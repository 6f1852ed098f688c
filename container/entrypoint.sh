#!/bin/sh
# The container's main process (under tini): efs-proxy, the NFSv4.2 mount through it, and the
# WebDAV server that publishes the mount.
#
#   1. efs-proxy run --listen 127.0.0.1:20049 --target NLB_DNS:2049 --fs-id .. --region ..
#      --service s3files [--az-id ..]   (IAM credentials from the environment or ~/.aws);
#      waits for its "listening on" line
#   2. preflight: efs-proxy check --json with the same target options (DNS, TCP, TLS, client
#      certificate, bind); a failed step is reported as one diagnosis and one fix, exit 1
#   3. mount -t nfs4 -o nfsvers=4.2,port=20049,hard,... 127.0.0.1:/ /mnt/s3files
#   4. efs-webdav --listen 0.0.0.0:8080 --root /mnt/s3files --chroot; prints "entrypoint: ready"
#   5. SIGTERM/SIGINT: stop WebDAV, unmount (forced, then lazily, if busy or hung), stop the
#      proxy, exit 0. If the proxy dies meanwhile it is restarted (the hard mount reconnects);
#      if WebDAV dies the container stops with status 1 (compose's restart policy brings it
#      back).
#
# Every failure prints "entrypoint: error: ..." and "entrypoint: fix: ..." and exits 1. POSIX
# sh: runs under dash (the image) and busybox sh (the QEMU end-to-end test).
#
# Usage: entrypoint.sh            start (the image's CMD)
#        entrypoint.sh health     exit 0 if the mount answers and WebDAV listens (HEALTHCHECK)
#
# Environment:
#   NLB_DNS        where the proxy connects: the infra stack's NlbDns output (HOST or HOST:PORT;
#                  port 2049 if none)                                        required*
#   FS_ID          file system id, fs- and 8 to 40 hex digits                required*
#   AWS_REGION     region of the file system (REGION is accepted too)        required*
#   AZ_ID          availability zone id of the mount target (e.g. cac1-az1)  optional
#   EFS_SERVICE    s3files (default) or efs
#   Each of these is checked whole against its pattern and reaches efs-proxy as one argument.
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_PROFILE, or ~/.aws
#                  mounted read-only at /root/.aws: the IAM identity with the client policy
#   WEBDAV_LISTEN  default 0.0.0.0:8080 (docker publishes it on the host's 127.0.0.1 only)
#   WEBDAV_PASSWORD_FILE   file whose first line is the WebDAV password (basic authentication;
#                  docker-mount.sh mounts one read-only at /run/secrets/webdav-password);
#                  WEBDAV_USER then defaults to "s3files"
#   WEBDAV_USER / WEBDAV_PASSWORD, WEBDAV_PUBLIC_PORT (the host's published port),
#   WEBDAV_ALLOW_HOSTS (extra Host names): read by efs-webdav from the environment
#   MOUNT_POINT    default /mnt/s3files
#   EFS_PROXY / EFS_WEBDAV          the binaries (default: efs-proxy / efs-webdav on PATH)
#   STATE_DIR      logs and pid files (default /run/s3files)
#   READY_TIMEOUT  seconds to wait for each server's "listening on" (default 30)
#   MOUNT_TIMEOUT  seconds the mount may take (default 90)
#   LOG_LEVEL      efs-proxy and efs-webdav log level (default info)
# Test-only switches (never set by docker-compose.yml or docker-mount.sh):
#   EFS_PROXY_ARGS replaces the target options of `efs-proxy run` and `efs-proxy check`
#                  (*then NLB_DNS, FS_ID, AWS_REGION are not needed); split into words on
#                  purpose, so only for tests with known values: "--target H:P --server-name N
#                  --ca-file F --cert F --key F" (tests/e2e/container-guest.sh)
#   TEST_SERVE_DIR no proxy, no NFS mount: WebDAV serves this directory; `health` checks only
#                  WebDAV (the podman image test and tests/e2e/container-entrypoint.sh)
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

# The stop budget, in seconds, step by step (SIGTERM to exit). The sum, 60 s, must stay below
# docker-compose.yml's stop_grace_period (75s), after which Docker sends SIGKILL and dirty NFS
# data is lost; tests/e2e/container-static.sh checks the arithmetic.
WEBDAV_GRACE=10       # efs-webdav --grace: in-flight requests get this long after SIGTERM
WEBDAV_STOP_SECS=12   # then efs-webdav is killed
UMOUNT_SECS=30        # umount: flushes dirty data through the proxy
UMOUNT_FORCE_SECS=8   # umount -f, when the server does not answer
UMOUNT_LAZY_SECS=2    # umount -l (detach), when still busy
PROXY_STOP_SECS=8     # efs-proxy drains its connections
STOP_BUDGET_SECS=$((WEBDAV_STOP_SECS + UMOUNT_SECS + UMOUNT_FORCE_SECS + UMOUNT_LAZY_SECS + PROXY_STOP_SECS))

proxy_pid='' webdav_pid='' tee_pid='' sleep_pid='' child_pid='' stopping=0

log() { printf 'entrypoint: %s\n' "$*" >&2; }

# fail WHAT FIX: report, undo what was started, exit 1
fail() {
  log "error: $1"
  [ -z "${2:-}" ] || log "fix: $2"
  stop_all
  exit 1
}

is_number() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# matches VALUE ERE: VALUE, one word of [A-Za-z0-9.:_-], matches ERE as a whole
matches() {
  case $1 in '' | *[!A-Za-z0-9.:_-]*) return 1 ;; esac
  printf '%s\n' "$1" | grep -Ex -- "$2" >/dev/null
}

# ---------------------------------------------------------------------------------------
# health: WebDAV listens, and (unless TEST_SERVE_DIR) the mount answers within 5 s.
health() {
  if [ -z "${TEST_SERVE_DIR:-}" ]; then
    grep -q " $MOUNT_POINT nfs4 " /proc/mounts || { echo "not mounted: $MOUNT_POINT"; return 1; }
    timeout -s KILL 5 stat "$MOUNT_POINT" >/dev/null 2>&1 || { echo "mount does not answer: $MOUNT_POINT"; return 1; }
  fi
  port=${WEBDAV_LISTEN##*:}
  hex=$(printf '%04X' "$port")
  # /proc/net/tcp{,6}: local_address is ADDR:PORT in hex, state 0A is LISTEN
  if ! awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
    echo "WebDAV does not listen on port $port"
    return 1
  fi
  if [ -n "${TEST_SERVE_DIR:-}" ]; then
    echo "ok: WebDAV on port $port serving $TEST_SERVE_DIR (TEST_SERVE_DIR: no mount)"
  else
    echo "ok: $MOUNT_POINT mounted, WebDAV on port $port"
  fi
}

if [ "${1:-}" = health ]; then
  health
  exit $?
fi
[ $# -eq 0 ] || { log "error: unknown arguments: $* (usage: entrypoint.sh [health])"; exit 2; }

# ---------------------------------------------------------------------------------------
# The proxy's target options, checked whole: TARGET, REGION_NAME, SERVICE_NAME, AZ_NAME.
HOST_RE='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*'
validate_target() {
  if [ -n "${EFS_PROXY_ARGS:-}" ]; then
    log "EFS_PROXY_ARGS is set (test only): efs-proxy run --listen $PROXY_LISTEN $EFS_PROXY_ARGS"
    return 0
  fi
  REGION_NAME=${AWS_REGION:-${REGION:-}}
  SERVICE_NAME=${EFS_SERVICE:-s3files}
  AZ_NAME=${AZ_ID:-}
  [ -n "${NLB_DNS:-}" ] || fail "NLB_DNS is not set" \
    "pass the NLB's DNS name (the infra stack's NlbDns output): docker-mount.sh up NLB_DNS, or -e NLB_DNS=..."
  [ -n "${FS_ID:-}" ] || fail "FS_ID is not set" \
    "pass the file system id (the infra stack's FileSystemId output, fs-...): --fs-id or -e FS_ID=..."
  [ -n "$REGION_NAME" ] || fail "AWS_REGION is not set" \
    "pass the file system's region (the infra stack's Region output): --region or -e AWS_REGION=..."
  matches "$FS_ID" 'fs-[0-9a-f]{8,40}' ||
    fail "FS_ID '$FS_ID' is not a file system id" "use the id alone (fs-0123456789abcdef0), not the ARN or the bucket name"
  matches "$REGION_NAME" '[a-z]{2}(-[a-z]+)+-[0-9]{1,2}' ||
    fail "AWS_REGION '$REGION_NAME' is not a region name" "use e.g. us-east-1 or ca-central-1"
  [ -z "$AZ_NAME" ] || matches "$AZ_NAME" '[a-z]{2,6}[0-9]{1,2}-az[0-9]{1,2}' ||
    fail "AZ_ID '$AZ_NAME' is not an availability zone id" \
      "use the zone id (e.g. use1-az4, the infra stack's MountTargetAzId output), not its name (us-east-1a)"
  case $SERVICE_NAME in
    s3files | efs) ;;
    *) fail "EFS_SERVICE '$SERVICE_NAME' is neither s3files nor efs" "leave it unset for S3 Files, or set efs" ;;
  esac
  matches "$NLB_DNS" "$HOST_RE(:[0-9]{1,5})?" ||
    fail "NLB_DNS '$NLB_DNS' is not a host name or HOST:PORT" "use the infra stack's NlbDns output as is"
  case $NLB_DNS in
    *:*) TARGET=$NLB_DNS ;;
    *) TARGET=$NLB_DNS:2049 ;;
  esac
  port=${TARGET##*:}
  if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    fail "NLB_DNS port $port is out of range" "use port 2049 (or none)"
  fi
  if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ] &&
    [ ! -f "${HOME:-/root}/.aws/credentials" ] && [ ! -f "${HOME:-/root}/.aws/config" ]; then
    log "warning: no AWS credentials in the environment and no ${HOME:-/root}/.aws; pass AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or mount ~/.aws read-only at /root/.aws (docker-mount.sh does); trying the instance metadata service"
  fi
  log "efs-proxy run --listen $PROXY_LISTEN --target $TARGET --fs-id $FS_ID --region $REGION_NAME --service $SERVICE_NAME${AZ_NAME:+ --az-id $AZ_NAME}"
}

# exec_proxy SUBCOMMAND [OPTIONS...]: replaces the (sub)shell with efs-proxy and the target
# options, each value one argument. Only run it in the background or in a subshell.
exec_proxy() {
  if [ -n "${EFS_PROXY_ARGS:-}" ]; then
    set -f
    # shellcheck disable=SC2086  # the test-only hook is split into words on purpose
    exec "$EFS_PROXY" "$@" $EFS_PROXY_ARGS
  fi
  set -- "$@" --target "$TARGET" --fs-id "$FS_ID" --region "$REGION_NAME" --service "$SERVICE_NAME"
  [ -z "$AZ_NAME" ] || set -- "$@" --az-id "$AZ_NAME"
  exec "$EFS_PROXY" "$@"
}

# The proxy's stderr goes through a FIFO to tee: into the container's log at once, and into
# efs-proxy.log.
start_proxy() {
  : >"$STATE_DIR/efs-proxy.out"
  fifo=$STATE_DIR/efs-proxy.fifo
  rm -f "$fifo"
  mkfifo "$fifo" || fail "cannot create $fifo" "check that $STATE_DIR is writable"
  tee -a "$STATE_DIR/efs-proxy.log" <"$fifo" >&2 &
  tee_pid=$!
  exec_proxy run --log-level "$LOG_LEVEL" --listen "$PROXY_LISTEN" \
    >"$STATE_DIR/efs-proxy.out" 2>"$fifo" </dev/null &
  proxy_pid=$!
}

# wait_listening PID OUTFILE: until OUTFILE has "listening on ...", PID dies or timeout
wait_listening() {
  n=0
  while ! grep -q '^listening on ' "$2" 2>/dev/null; do
    kill -0 "$1" 2>/dev/null || return 1
    n=$((n + 1))
    [ "$n" -le $((READY_TIMEOUT * 10)) ] || return 2
    sleep 0.1
  done
}

# wait_child: waits for child_pid (interruptible by SIGTERM, whose trap stops everything);
# returns its exit status.
wait_child() {
  wait "$child_pid"
  rc=$?
  child_pid=''
  return "$rc"
}

# ---------------------------------------------------------------------------------------
# Preflight: `efs-proxy check --json` prints one JSON document, its steps in order, each an
# object with (among others) "step", "status" (pass/fail/skip), "detail" and "problem" (a
# stable id or null); exit status 0 when every step passed, 1 when one failed.
#
# failed_step FILE: "STEP<TAB>PROBLEM<TAB>DETAIL" of the first failed step (serde_json's
# pretty printing: one key per line; the keys of a step may come in any order).
failed_step() {
  awk '
    function value(line) {
      sub(/^[^:]*: /, "", line); sub(/,$/, "", line)
      if (line == "null") return ""
      line = substr(line, 2, length(line) - 2)
      gsub(/\\"/, "\"", line); gsub(/\\\\/, "\\", line)
      return line
    }
    /^ *"(step|status|detail|problem)": / {
      key = $1; gsub(/[":]/, "", key); f[key] = value($0)
      if ("step" in f && "status" in f) {
        if (f["status"] == "fail") { print f["step"] "\t" f["problem"] "\t" f["detail"]; exit }
        split("", f)
      }
    }' "$1"
}

# preflight: the way to the mount target, step by step, before the mount; a failed step ends
# the start with its diagnosis.
preflight() {
  report=$STATE_DIR/check.json
  exec_proxy check --json >"$report" 2>"$STATE_DIR/check.err" </dev/null &
  child_pid=$!
  wait_child
  rc=$?
  if [ "$rc" = 0 ]; then
    log "preflight (efs-proxy check): DNS, TCP, TLS, client certificate and bind passed"
    return 0
  fi
  failed=$(failed_step "$report")
  step=${failed%%"	"*}
  rest=${failed#*"	"}
  problem=${rest%%"	"*}
  detail=${rest#*"	"}
  if [ -z "$failed" ]; then
    cat "$STATE_DIR/check.err" >&2
    fail "efs-proxy check failed (exit status $rc) without a failed step" "see its messages above"
  fi
  log "preflight (efs-proxy check): step $step failed: $detail"
  diagnose_step "$step" "$problem" "$detail"
}

# diagnose_step STEP PROBLEM DETAIL: one error and one fix for a failed check step; exits.
diagnose_step() {
  case $1 in
    config) fail "efs-proxy refused the settings: $3" "correct the value it names (NLB_DNS, FS_ID, AZ_ID, AWS_REGION)" ;;
    credentials) fail "no usable AWS credentials" \
      "pass AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE with ~/.aws mounted read-only at /root/.aws (docker-mount.sh does); check that they have not expired (aws sts get-caller-identity)" ;;
    dns) fail "the mount target's address does not resolve" \
      "check NLB_DNS (the infra stack's NlbDns output) and the Docker host's DNS" ;;
    tcp) fail "no TCP connection to the mount target" \
      "TCP 2049 to the NLB is not reachable: its security group must allow your public IP (infra context allowedCidr; curl -s https://checkip.amazonaws.com), and NLB_DNS must be the stack's NlbDns output" ;;
    tls) fail "the TLS handshake with the mount target failed" \
      "check FS_ID, AZ_ID and AWS_REGION (the server certificate names the file system: {az_id}.{fs_id}.s3files.{region}.on.aws) and the Docker host's clock" ;;
    client-cert) fail "the mount target did not accept the client certificate" \
      "check the credentials (aws sts get-caller-identity), AWS_REGION and FS_ID" ;;
    bind)
      case $2 in
        wrong-region-or-fs-id) fail "the mount target could not verify the IAM signature of the client certificate" \
          "check AWS_REGION and FS_ID (the stack's Region and FileSystemId outputs); if they are right, the secret access key or session token does not belong to the access key: refresh the credentials" ;;
        *) fail "the mount target refused the mount (bind)" \
          "attach the client policy (the infra stack's ClientPolicyArn: s3files:ClientMount, s3files:ClientWrite) to the IAM identity of the credentials (aws sts get-caller-identity), and check FS_ID" ;;
      esac
      ;;
    *) fail "efs-proxy check: step $1 failed" "see the preflight line above" ;;
  esac
}

# mount_nfs: the NFS mount through the proxy; a failure ends the start with its diagnosis.
mount_nfs() {
  log "mount -t nfs4 -o nfsvers=4.2,port=20049,hard,timeo=600,retrans=2,noresvport,rsize=1048576,wsize=1048576 127.0.0.1:/ $MOUNT_POINT"
  timeout -s KILL "$MOUNT_TIMEOUT" mount -t nfs4 -o nfsvers=4.2,port=20049,hard,timeo=600,retrans=2,noresvport,rsize=1048576,wsize=1048576 127.0.0.1:/ "$MOUNT_POINT" \
    2>"$STATE_DIR/mount.err" </dev/null &
  child_pid=$!
  wait_child && { log "mounted $MOUNT_POINT"; return 0; }
  rc=$?
  merr=$STATE_DIR/mount.err
  cat "$merr" >&2
  first=$(sed -n '1{s/[[:space:]]*$//;p;}' "$merr")
  what="the NFS mount of 127.0.0.1:/ through efs-proxy failed${first:+ ($first)}"
  [ "$rc" != 137 ] || what="the NFS mount of 127.0.0.1:/ through efs-proxy took over ${MOUNT_TIMEOUT}s"
  if grep -qi 'no such device\|unknown filesystem type' "$merr"; then
    fail "$what" "the Docker host's kernel has no NFSv4 client: use Docker Desktop's VM, or on a Linux host 'modprobe nfsv4'"
  elif grep -qi 'access denied' "$merr"; then
    fail "$what" "the file system refused the mount: attach the client policy (ClientPolicyArn) to the IAM identity, and check FS_ID"
  elif grep -qi 'operation not permitted\|permission denied' "$merr"; then
    fail "$what" "the container may not mount: run it with --cap-add SYS_ADMIN (docker-mount.sh and docker-compose.yml do), plus --security-opt apparmor=unconfined on AppArmor hosts, or --privileged"
  fi
  fail "$what" "see the proxy's messages above; MOUNT_TIMEOUT raises the time limit"
}

# start_webdav: efs-webdav serving MOUNT_POINT; waits for its "listening on".
start_webdav() {
  # --chroot: the kernel keeps every path (symbolic links included) inside the mount.
  set -- --log-level "$LOG_LEVEL" --listen "$WEBDAV_LISTEN" --root "$MOUNT_POINT" --chroot --grace "$WEBDAV_GRACE"
  if [ -n "${WEBDAV_PASSWORD_FILE:-}" ]; then
    { [ -f "$WEBDAV_PASSWORD_FILE" ] && [ -r "$WEBDAV_PASSWORD_FILE" ]; } ||
      fail "WEBDAV_PASSWORD_FILE $WEBDAV_PASSWORD_FILE is not a readable file" \
        "mount the password file read-only there (docker-mount.sh mounts ~/.config/s3files/webdav-password at /run/secrets/webdav-password)"
    export WEBDAV_USER="${WEBDAV_USER:-s3files}"
    set -- "$@" --password-file "$WEBDAV_PASSWORD_FILE"
  fi
  # efs-webdav reads WEBDAV_USER, WEBDAV_PASSWORD, WEBDAV_PUBLIC_PORT and WEBDAV_ALLOW_HOSTS
  # from the environment.
  "$EFS_WEBDAV" "$@" >"$STATE_DIR/efs-webdav.out" </dev/null &
  webdav_pid=$!
  wait_listening "$webdav_pid" "$STATE_DIR/efs-webdav.out" ||
    fail "efs-webdav did not start (its error is above)" \
      "check WEBDAV_LISTEN ($WEBDAV_LISTEN), WEBDAV_PUBLIC_PORT, WEBDAV_ALLOW_HOSTS and the password file"
  log "WebDAV on $(sed -n 's/^listening on //p' "$STATE_DIR/efs-webdav.out") serving $MOUNT_POINT${WEBDAV_USER:+ (basic authentication, user $WEBDAV_USER)}${WEBDAV_PUBLIC_PORT:+, public port $WEBDAV_PUBLIC_PORT}"
}

# ---------------------------------------------------------------------------------------
# Shutdown: WebDAV first (no new writes), then the mount (its dirty data still goes through
# the proxy), then the proxy. The budgets are at the top.
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
  if timeout -s KILL "$UMOUNT_SECS" umount "$MOUNT_POINT" 2>/dev/null; then
    log "unmounted $MOUNT_POINT"
  elif timeout -s KILL "$UMOUNT_FORCE_SECS" umount -f "$MOUNT_POINT" 2>/dev/null; then
    log "unmounted $MOUNT_POINT (forced: the server did not answer)"
  elif timeout -s KILL "$UMOUNT_LAZY_SECS" umount -l "$MOUNT_POINT" 2>/dev/null; then
    log "unmounted $MOUNT_POINT lazily (it was busy)"
  else
    log "could not unmount $MOUNT_POINT"
  fi
}

stop_all() {
  stopping=1
  [ -z "$sleep_pid" ] || kill "$sleep_pid" 2>/dev/null
  [ -z "$child_pid" ] || stop_pid "$child_pid" 2
  child_pid=''
  stop_pid "$webdav_pid" "$WEBDAV_STOP_SECS"
  webdav_pid=''
  [ -n "${TEST_SERVE_DIR:-}" ] || unmount
  stop_pid "$proxy_pid" "$PROXY_STOP_SECS"
  proxy_pid=''
  # tee ends with the proxy (end of file on the FIFO)
  [ -z "$tee_pid" ] || wait "$tee_pid" 2>/dev/null
  tee_pid=''
}

on_signal() {
  [ "$stopping" = 0 ] || return 0
  log "$1: stopping WebDAV, unmounting, stopping the proxy (at most $STOP_BUDGET_SECS s)"
  stop_all
  log "stopped"
  exit 0
}
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGINT' INT

# supervise: until a signal, restart a dead proxy (the hard mount reconnects to it); stop on
# a dead WebDAV server.
supervise() {
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
    if [ -n "$proxy_pid" ] && ! kill -0 "$proxy_pid" 2>/dev/null; then
      restarts=$((restarts + 1))
      log "efs-proxy exited; restarting it (restart $restarts); NFS requests wait meanwhile (hard mount)"
      start_proxy
      wait_listening "$proxy_pid" "$STATE_DIR/efs-proxy.out" ||
        log "efs-proxy did not come back; retrying in 2 s"
    fi
  done
}

# ---------------------------------------------------------------------------------------
for v in READY_TIMEOUT MOUNT_TIMEOUT; do
  eval "val=\$$v"
  # shellcheck disable=SC2154  # val is set by the eval above
  is_number "$val" || { log "error: $v must be a number of seconds (got '$val')"; exit 2; }
done
command -v "$EFS_WEBDAV" >/dev/null 2>&1 || fail "efs-webdav not found ($EFS_WEBDAV)" "set EFS_WEBDAV to the binary's path"
mkdir -p "$STATE_DIR" || fail "cannot create $STATE_DIR" "check the container's file system"

if [ -n "${TEST_SERVE_DIR:-}" ]; then
  log "TEST_SERVE_DIR is set (test only): no proxy, no NFS mount; WebDAV serves $TEST_SERVE_DIR"
  [ -d "$TEST_SERVE_DIR" ] || fail "TEST_SERVE_DIR $TEST_SERVE_DIR is not a directory" "create it or unset TEST_SERVE_DIR"
  # The directory takes the mount point's place (`health` does not look at either then).
  MOUNT_POINT=$TEST_SERVE_DIR
  start_webdav
else
  command -v "$EFS_PROXY" >/dev/null 2>&1 || fail "efs-proxy not found ($EFS_PROXY)" "set EFS_PROXY to the binary's path"
  mkdir -p "$MOUNT_POINT" || fail "cannot create $MOUNT_POINT" "check the container's file system"
  : >"$STATE_DIR/efs-proxy.log"
  validate_target
  start_proxy
  wait_listening "$proxy_pid" "$STATE_DIR/efs-proxy.out"
  case $? in
    0) log "efs-proxy listening on $PROXY_LISTEN" ;;
    1)
      wait "$tee_pid" 2>/dev/null # the proxy's last words are in the log
      tee_pid=''
      wait "$proxy_pid" 2>/dev/null
      log "efs-proxy exited at start (status $?); diagnosing with efs-proxy check"
      proxy_pid=''
      preflight
      fail "efs-proxy exited at start (its error is above)" "fix the argument or credential it names"
      ;;
    *) fail "efs-proxy did not print 'listening on' within ${READY_TIMEOUT}s" "see its log above; READY_TIMEOUT raises the limit" ;;
  esac
  preflight
  mount_nfs
  start_webdav
fi
echo "entrypoint: ready"
supervise
