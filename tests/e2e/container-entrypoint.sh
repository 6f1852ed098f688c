#!/usr/bin/env bash
# container/entrypoint.sh on this host, as root, in its own network namespace (only loopback,
# so nothing leaves the machine, not even the DNS query of the .invalid name), against real
# peers: the test mount target (tests/src/bin/fake-mount-target.rs) in IAM mode (it checks
# the SigV4 signature of the client certificate the proxy makes from the environment's test
# credentials), and the real efs-proxy and efs-webdav.
#
#   1. argv injection: FS_ID, NLB_DNS, AWS_REGION, AZ_ID, EFS_SERVICE with a second word (or a
#      second line) are refused before efs-proxy starts; valid values reach it as separate
#      arguments (a recording stand-in for efs-proxy).
#   2. failure classification, one case per failing step of the preflight (`efs-proxy check
#      --json`): DNS (a name under .invalid), TCP (a closed loopback port), TLS (another CA),
#      bind refused, no credentials, a wrong secret key, an unknown access key. Each must end
#      with its exact `entrypoint: error:` and `entrypoint: fix:` lines, exit status 1, and
#      nothing left running or mounted.
#   3. a passing preflight, then the real `mount -t nfs4`: this kernel has no NFS client, so
#      it fails with "No such device", which must be diagnosed as such.
#   4. TEST_SERVE_DIR: WebDAV from a directory with the password file (no proxy started),
#      `entrypoint.sh health`, and SIGTERM: exit 0 within seconds, nothing left.
# Cases 1 and 2 run under dash; a few also under busybox sh.
#
#   cargo build -p efs-proxy -p efs-webdav -p efs-proxy-tests --bins
#   tests/e2e/container-entrypoint.sh
#
# env: BIN_DIR (default $CARGO_TARGET_DIR/debug or target/debug), ENTRYPOINT_SH (the script
#      under test, default container/entrypoint.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=container-entrypoint
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_root
need_cmd dash dash
need_cmd busybox busybox
need_cmd curl curl
need_cmd unshare util-linux
if [ "${ENTRYPOINT_TEST_NETNS:-}" != 1 ]; then
  ENTRYPOINT_TEST_NETNS=1 exec unshare -n -- bash "$0" "$@"
fi
ip link set lo up

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
for bin in efs-proxy efs-webdav fake-mount-target; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin not found: run 'cargo build -p efs-proxy -p efs-webdav -p efs-proxy-tests --bins' first" 2
done
EP=${ENTRYPOINT_SH:-$ROOT/container/entrypoint.sh}  # another copy: to show what the test catches
FS=fs-0123456789abcdef0
SERVER_NAME=$FS.s3files.us-east-1.on.aws
SECRET="entrypointTestSecret+$RANDOM$RANDOM"

t0=$(now)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/efs-entrypoint.XXXXXX")
RUN=$TMP/run      # everything the entrypoint starts has this in its command line
PEERS=$TMP/peers  # the mount targets
mkdir -p "$RUN/bin" "$RUN/home" "$PEERS"
for bin in efs-proxy efs-webdav; do ln -s "$BIN_DIR/$bin" "$RUN/bin/$bin"; done
# busybox's applets, first on PATH when the entrypoint runs under busybox sh, as in the QEMU
# guest of tests/e2e/container-guest.sh (its awk, grep, sed, timeout, tee, mkfifo).
mkdir -p "$RUN/busybox"
for applet in awk grep sed timeout tee mkfifo sleep cat mkdir rm stat; do
  ln -s "$(command -v busybox)" "$RUN/busybox/$applet"
done
pids=()
# shellcheck disable=SC2317  # called through the trap
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then log "FAILED; logs kept in $TMP"; else rm -rf "$TMP"; fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_target VAR NAME ARGS...: a fake mount target (PKI in $PEERS/NAME), its address in VAR
start_target() {
  local var=$1 name=$2
  shift 2
  "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 --pki-dir "$PEERS/$name" \
    --server-name "$SERVER_NAME" "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" </dev/null &
  pids+=($!)
  await_listening "$var" "$name" "${pids[-1]}"
}
FAKE_MOUNT_TARGET_IAM_SECRET=$SECRET start_target T_IAM target-iam \
  --iam-fs-id "$FS" --iam-service s3files --iam-region us-east-1 --iam-access-key-id AKIDENTRYTEST
start_target T_REFUSE target-refuse --bind error
CLOSED=127.0.0.1:$(free_port)
echo "mount targets: IAM $T_IAM, refusing bind $T_REFUSE; nothing on $CLOSED"

GOOD_CREDS=(AWS_ACCESS_KEY_ID=AKIDENTRYTEST "AWS_SECRET_ACCESS_KEY=$SECRET")
TRUST_IAM=(SSL_CERT_FILE="$PEERS/target-iam/ca.pem")  # the system trust store of efs-proxy

# run_ep NAME VAR=VALUE...: the entrypoint (under $EP_SHELL, default dash) in a clean
# environment; its output in $TMP/NAME.log, its exit status in RC.
run_ep() {
  local name=$1 shell path=$RUN/bin:/usr/sbin:/usr/bin:/sbin:/bin
  shift
  read -r -a shell <<<"${EP_SHELL:-dash}"
  [ "${shell[0]}" != busybox ] || path=$RUN/bin:$RUN/busybox:/usr/sbin:/usr/bin:/sbin:/bin
  set +e
  env -i PATH="$path" HOME="$RUN/home" AWS_EC2_METADATA_DISABLED=true \
    STATE_DIR="$RUN/state-$name" MOUNT_POINT="$RUN/mnt-$name" WEBDAV_LISTEN=127.0.0.1:0 \
    MOUNT_TIMEOUT=20 READY_TIMEOUT=20 "$@" \
    timeout -s KILL 60 "${shell[@]}" "$EP" >"$TMP/$name.log" 2>&1 </dev/null
  RC=$?
  set -e
}

# nothing_left NAME: no process of this test's entrypoints and no mount left behind. (busybox's
# timeout leaves its watcher process behind for up to a second after the command exits; it
# checks once a second whether the command is still there.)
nothing_left() {
  local left deadline=$((SECONDS + 3))
  while left=$(pgrep -af -- "$RUN/") && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  [ -z "$left" ] || die "$1: processes left after the entrypoint exited: $left"
  ! grep -q " $RUN/mnt-$1 " /proc/mounts || die "$1: $RUN/mnt-$1 still mounted"
}

# expect_failure NAME ERROR FIX: exit status 1, exactly these error and fix lines, nothing left
expect_failure() {
  local name=$1 error=$2 fix=$3
  [ "$RC" = 1 ] || { cat "$TMP/$name.log" >&2; die "$name: exit status $RC, expected 1"; }
  grep -qxF -- "entrypoint: error: $error" "$TMP/$name.log" ||
    { cat "$TMP/$name.log" >&2; die "$name: no line 'entrypoint: error: $error'"; }
  grep -qxF -- "entrypoint: fix: $fix" "$TMP/$name.log" ||
    { cat "$TMP/$name.log" >&2; die "$name: no line 'entrypoint: fix: $fix'"; }
  [ "$(grep -c '^entrypoint: error:' "$TMP/$name.log")" = 1 ] || die "$name: more than one error line"
  nothing_left "$name"
  echo "$name: exit 1, $error"
}

# ---- 1. argv injection -------------------------------------------------------------------
# A stand-in efs-proxy that records its arguments, one per line, and exits 1.
cat >"$RUN/bin/recording-proxy" <<'STUB'
#!/bin/sh
for a in "$@"; do printf '%s\n' "$a"; done >>"$RECORD"
echo "recording-proxy: exits" >&2
exit 1
STUB
chmod +x "$RUN/bin/recording-proxy"
VALID=(NLB_DNS=nlb.example.com FS_ID="$FS" AWS_REGION=us-east-1 AZ_ID=use1-az4 EFS_SERVICE=s3files)
injection() { # injection NAME ERROR FIX VAR=VALUE (overrides one valid value)
  local name=$1 error=$2 fix=$3 over=$4
  : >"$TMP/record"
  run_ep "$name" EFS_PROXY="$RUN/bin/recording-proxy" RECORD="$TMP/record" "${VALID[@]}" "$over"
  expect_failure "$name" "$error" "$fix"
  [ ! -s "$TMP/record" ] || die "$name: efs-proxy was started with: $(tr '\n' ' ' <"$TMP/record")"
}
for shell in dash "busybox sh"; do
  EP_SHELL=$shell injection "inject-fs-id-${shell% *}" "FS_ID '$FS --no-verify' is not a file system id" \
    "use the id alone (fs-0123456789abcdef0), not the ARN or the bucket name" "FS_ID=$FS --no-verify"
done
# A second line: refused too (the error line then spans two lines).
: >"$TMP/record"
run_ep inject-fs-id-line EFS_PROXY="$RUN/bin/recording-proxy" RECORD="$TMP/record" "${VALID[@]}" "FS_ID=$FS
--no-verify"
{ [ "$RC" = 1 ] && grep -q "^entrypoint: error: FS_ID '$FS\$" "$TMP/inject-fs-id-line.log"; } ||
  { cat "$TMP/inject-fs-id-line.log" >&2; die "inject-fs-id-line: FS_ID with a second line was not refused"; }
[ ! -s "$TMP/record" ] || die "inject-fs-id-line: efs-proxy was started with: $(tr '\n' ' ' <"$TMP/record")"
nothing_left inject-fs-id-line
echo "inject-fs-id-line: exit 1, FS_ID with a second line refused"
injection inject-nlb "NLB_DNS 'nlb.example.com --no-verify' is not a host name or HOST:PORT" \
  "use the infra stack's NlbDns output as is" "NLB_DNS=nlb.example.com --no-verify"
injection inject-nlb-option "NLB_DNS '--no-verify' is not a host name or HOST:PORT" \
  "use the infra stack's NlbDns output as is" "NLB_DNS=--no-verify"
injection inject-region "AWS_REGION 'us-east-1 --no-verify' is not a region name" \
  "use e.g. us-east-1 or ca-central-1" "AWS_REGION=us-east-1 --no-verify"
injection inject-az "AZ_ID 'use1-az4 --no-verify' is not an availability zone id" \
  "use the zone id (e.g. use1-az4, the infra stack's MountTargetAzId output), not its name (us-east-1a)" \
  "AZ_ID=use1-az4 --no-verify"
injection inject-service "EFS_SERVICE 's3files --no-verify' is neither s3files nor efs" \
  "leave it unset for S3 Files, or set efs" "EFS_SERVICE=s3files --no-verify"
# Valid values: each one argument, in this order.
: >"$TMP/record"
run_ep valid-argv EFS_PROXY="$RUN/bin/recording-proxy" RECORD="$TMP/record" "${VALID[@]}" NLB_DNS=nlb.example.com:2049
expected="run --log-level info --listen 127.0.0.1:20049 --target nlb.example.com:2049 --fs-id $FS --region us-east-1 --service s3files --az-id use1-az4"
got=$(head -n 15 "$TMP/record" | tr '\n' ' ')
[ "$got" = "$expected " ] || die "valid-argv: efs-proxy run got '$got', expected '$expected'"
[ "$(wc -l <"$TMP/record")" = 27 ] || die "valid-argv: expected run (15 arguments) then check --json (12): $(tr '\n' ' ' <"$TMP/record")"
[ "$(sed -n '16,17p' "$TMP/record" | tr '\n' ' ')" = "check --json " ] || die "valid-argv: no 'check --json' after the failed start"
nothing_left valid-argv
echo "valid-argv: efs-proxy got each value as one argument: $expected"

# ---- 2. failure classification (IAM mode, real peers) ------------------------------------
for shell in dash "busybox sh"; do
  EP_SHELL=$shell run_ep "dns-${shell% *}" "${GOOD_CREDS[@]}" "${TRUST_IAM[@]}" NLB_DNS=nlb.example.invalid FS_ID="$FS" AWS_REGION=us-east-1
  expect_failure "dns-${shell% *}" "the mount target's address does not resolve" \
    "check NLB_DNS (the infra stack's NlbDns output) and the Docker host's DNS"
  grep -q '^entrypoint: preflight (efs-proxy check): step dns failed: .*cannot resolve nlb.example.invalid' "$TMP/dns-${shell% *}.log" ||
    die "dns: no preflight line naming the name that does not resolve"
done

for shell in dash "busybox sh"; do
  EP_SHELL=$shell run_ep "tcp-${shell% *}" "${GOOD_CREDS[@]}" "${TRUST_IAM[@]}" NLB_DNS="$CLOSED" FS_ID="$FS" AWS_REGION=us-east-1
  expect_failure "tcp-${shell% *}" "no TCP connection to the mount target" \
    "TCP 2049 to the NLB is not reachable: its security group must allow your public IP (infra context allowedCidr; curl -s https://checkip.amazonaws.com), and NLB_DNS must be the stack's NlbDns output"
done

run_ep tls "${GOOD_CREDS[@]}" SSL_CERT_FILE="$PEERS/target-refuse/ca.pem" NLB_DNS="$T_IAM" FS_ID="$FS" AWS_REGION=us-east-1
expect_failure tls "the TLS handshake with the mount target failed" \
  "check FS_ID, AZ_ID and AWS_REGION (the server certificate names the file system: {az_id}.{fs_id}.s3files.{region}.on.aws) and the Docker host's clock"

run_ep bind-refused "${GOOD_CREDS[@]}" SSL_CERT_FILE="$PEERS/target-refuse/ca.pem" NLB_DNS="$T_REFUSE" FS_ID="$FS" AWS_REGION=us-east-1
BIND_FIX="attach the client policy (the infra stack's ClientPolicyArn: s3files:ClientMount, s3files:ClientWrite) to the IAM identity of the credentials (aws sts get-caller-identity), and check FS_ID"
expect_failure bind-refused "the mount target refused the mount (bind)" "$BIND_FIX"

run_ep no-credentials "${TRUST_IAM[@]}" NLB_DNS="$T_IAM" FS_ID="$FS" AWS_REGION=us-east-1
expect_failure no-credentials "no usable AWS credentials" \
  "pass AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE with ~/.aws mounted read-only at /root/.aws (docker-mount.sh does); check that they have not expired (aws sts get-caller-identity)"

run_ep wrong-secret AWS_ACCESS_KEY_ID=AKIDENTRYTEST AWS_SECRET_ACCESS_KEY=not-the-secret "${TRUST_IAM[@]}" \
  NLB_DNS="$T_IAM" FS_ID="$FS" AWS_REGION=us-east-1
expect_failure wrong-secret "the mount target could not verify the IAM signature of the client certificate" \
  "check AWS_REGION and FS_ID (the stack's Region and FileSystemId outputs); if they are right, the secret access key or session token does not belong to the access key: refresh the credentials"

run_ep unknown-key AWS_ACCESS_KEY_ID=AKIDSOMEONEELSE "AWS_SECRET_ACCESS_KEY=$SECRET" "${TRUST_IAM[@]}" \
  NLB_DNS="$T_IAM" FS_ID="$FS" AWS_REGION=us-east-1
expect_failure unknown-key "the mount target refused the mount (bind)" "$BIND_FIX"
! grep -qF -- "$SECRET" "$TMP"/*.log || die "the secret access key appears in a log"

# ---- 3. preflight passes, the kernel has no NFS client -------------------------------------
for shell in dash "busybox sh"; do
  name=no-nfs-client-${shell% *}
  EP_SHELL=$shell run_ep "$name" "${GOOD_CREDS[@]}" "${TRUST_IAM[@]}" NLB_DNS="$T_IAM" FS_ID="$FS" AWS_REGION=us-east-1
  grep -qxF 'entrypoint: preflight (efs-proxy check): DNS, TCP, TLS, client certificate and bind passed' "$TMP/$name.log" ||
    { cat "$TMP/$name.log" >&2; die "$name: the preflight did not pass"; }
  expect_failure "$name" "the NFS mount of 127.0.0.1:/ through efs-proxy failed (mount.nfs4: No such device)" \
    "the Docker host's kernel has no NFSv4 client: use Docker Desktop's VM, or on a Linux host 'modprobe nfsv4'"
done
grep -q 'iam: client certificate accepted' "$TMP/target-iam.log" || die "the mount target never accepted an IAM certificate"

# ---- 4. TEST_SERVE_DIR, the password file, health, SIGTERM ---------------------------------
mkdir -p "$RUN/serve"
echo "served from a directory" >"$RUN/serve/hello.txt"
PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$PASSWORD" >"$RUN/webdav-password")
PORT=$(free_port)
SERVE_ENV=(TEST_SERVE_DIR="$RUN/serve" WEBDAV_LISTEN="127.0.0.1:$PORT" WEBDAV_PASSWORD_FILE="$RUN/webdav-password"
  WEBDAV_PUBLIC_PORT="$PORT")
env -i PATH="$RUN/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$RUN/home" STATE_DIR="$RUN/state-serve" \
  "${SERVE_ENV[@]}" dash "$EP" >"$TMP/serve.log" 2>&1 </dev/null &
ep_pid=$!
pids+=("$ep_pid")
deadline=$((SECONDS + 30))
until grep -q '^entrypoint: ready' "$TMP/serve.log"; do
  kill -0 "$ep_pid" 2>/dev/null || { cat "$TMP/serve.log" >&2; die "serve: the entrypoint exited before ready"; }
  [ "$SECONDS" -lt "$deadline" ] || die "serve: not ready within 30 s"
  sleep 0.1
done
URL=http://127.0.0.1:$PORT
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/hello.txt")
[ "$code" = 401 ] || die "serve: GET without the password answered $code (expected 401)"
body=$(curl -sf -u "s3files:$PASSWORD" "$URL/hello.txt") || die "serve: GET with the password failed"
[ "$body" = "served from a directory" ] || die "serve: GET returned '$body'"
health=$(env -i PATH="/usr/bin:/bin" "${SERVE_ENV[@]}" dash "$EP" health) || die "serve: health failed: $health"
[ "$health" = "ok: WebDAV on port $PORT serving $RUN/serve (TEST_SERVE_DIR: no mount)" ] || die "serve: health said '$health'"
if health=$(env -i PATH="/usr/bin:/bin" MOUNT_POINT="$RUN/mnt-serve" WEBDAV_LISTEN="127.0.0.1:$PORT" dash "$EP" health); then
  die "health without TEST_SERVE_DIR passed without a mount"
fi
[ "$health" = "not mounted: $RUN/mnt-serve" ] || die "health without a mount said '$health'"
! pgrep -af -- "$RUN/bin/efs-proxy" >/dev/null || die "serve: efs-proxy was started in TEST_SERVE_DIR mode"
ts=$(now)
kill -TERM "$ep_pid"
set +e
wait "$ep_pid"
rc=$?
set -e
stop_s=$(elapsed "$ts")
[ "$rc" = 0 ] || { cat "$TMP/serve.log" >&2; die "serve: exit status $rc after SIGTERM (expected 0)"; }
grep -qxF 'entrypoint: stopped' "$TMP/serve.log" || die "serve: no 'entrypoint: stopped' line"
awk -v s="$stop_s" 'BEGIN { exit !(s < 15) }' || die "serve: SIGTERM took $stop_s s"
nothing_left serve
echo "serve: TEST_SERVE_DIR with the password file (401 without it), health ok, SIGTERM: exit 0 in $stop_s s, nothing left"

log "PASS in $(elapsed "$t0") s"
