#!/usr/bin/env bash
# End to end with real peers:
#
#   Linux 6.1 kernel NFSv4.2 client (QEMU guest)
#     └─ mount -t nfs4 -o nfsvers=4.2,port=P 10.0.2.2:/   (slirp: host 127.0.0.1:P)
#   efs-proxy on 127.0.0.1:P
#     └─ TLS (verified server name, client certificate) + bind_client_to_partition
#   fake mount target (tests/src/bin/fake-mount-target.rs): TLS, requires the client
#     certificate, answers the bind READY, then relays to
#   nfs-ganesha on 127.0.0.1:G (FSAL_VFS, export DIR/export)
#
# The guest writes 16 MiB, unmounts, remounts and checks the sha256; the host then checks the
# same file in ganesha's export directory, and this script checks that the fake mount target
# saw the TLS handshake, the client certificate and the bind.
#
#   tests/e2e/kernel-client.sh             (root; run tests/harness/install-deps.sh once)
#
# env: E2E_MODE=native (default: `efs-proxy run ...` with PEM files), iam (the proxy makes
#      and signs its own IAM certificate from environment credentials; the mount target
#      verifies the SigV4 signature) or dropin (efs-utils' interface: `setsid efs-proxy CONFIG
#      --tls` with the config text efs-utils writes) or scaleup (native, with the mount target's
#      scale-up threshold at 1 byte/s: the proxy spreads the kernel client's records over three
#      server connections; no reply may be NFS4ERR_CONN_NOT_BOUND_TO_SESSION, which a
#      session-management COMPOUND sent on a connection the server never bound gets. With
#      the kernel client this passes even without the routing of such COMPOUNDs to the first
#      connection: every connection carries a SEQUENCE before the unmount's DESTROY_SESSION,
#      which binds it. The test that fails without that routing is proxy/tests/resilience.rs
#      `session_management_stays_on_the_first_connection_under_scale_up`);
#      BIN_DIR (default: $CARGO_TARGET_DIR or ./target, /debug) holds efs-proxy and
#      fake-mount-target; E2E_PROFILE=release picks target/release; anything run-guest.sh reads.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=e2e  # log prefix used by lib.sh
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_root
need_cmd ganesha.nfsd nfs-ganesha
need_cmd qemu-system-x86_64 qemu-system-x86

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/${E2E_PROFILE:-debug}}
for bin in efs-proxy fake-mount-target; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin not found: run 'cargo build --workspace --bins' first" 2
done
SERVER_NAME=fs-0123456789abcdef0.s3files.us-east-1.on.aws

t0=$(now)
e2e_workdir efs-e2e
GDIR=$TMP/ganesha
target='' proxy=''  # set by start_listener
# shellcheck disable=SC2317  # called by e2e_cleanup
e2e_teardown() { "$HARNESS_DIR/ganesha.sh" stop "$GDIR" 2>/dev/null; }

step() { printf '\n== %s\n' "$*"; }

step "nfs server: nfs-ganesha (NFSv4.2, FSAL_VFS)"
gport=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR" "$gport" VFS >/dev/null
echo "ganesha on 127.0.0.1:$gport, export $GDIR/export"

# Test credentials for the iam mode: never real, never logged (the script checks).
AWS_SECRET_ACCESS_KEY_E2E="e2eSecretKey/DoNotLog+$RANDOM$RANDOM"
target_cmd=("$BIN_DIR/fake-mount-target")
if [ "${E2E_MODE:-native}" = iam ]; then
  target_cmd=(env FAKE_MOUNT_TARGET_IAM_SECRET="$AWS_SECRET_ACCESS_KEY_E2E" "${target_cmd[@]}"
    --iam-fs-id fs-0123456789abcdef0 --iam-service s3files --iam-region us-east-1
    --iam-access-key-id AKIDE2ETEST)
fi

if [ "${E2E_MODE:-native}" = scaleup ]; then
  target_cmd+=(--scale-threshold 1 --scale-max 3)
  # The proxy measures throughput over 3 s before it scales up: write long enough for that.
  export NFS_MB=${NFS_MB:-96}
fi

step "mount target: fake-mount-target (TLS, client certificate required, bind READY, relay to ganesha)"
start_listener target target "${target_cmd[@]}" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki" --server-name "$SERVER_NAME" --bind ready --backend "127.0.0.1:$gport"
echo "mount target on $target, certificate for $SERVER_NAME (test CA $TMP/pki/ca.pem)"

case ${E2E_MODE:-native} in
native | scaleup)
  step "proxy: efs-proxy run (TLS to the mount target, client certificate, bind)"
  start_listener proxy proxy "$BIN_DIR/efs-proxy" run --listen 127.0.0.1:0 \
    --target "$target" --server-name "$SERVER_NAME" --ca-file "$TMP/pki/ca.pem" \
    --cert "$TMP/pki/client.pem" --key "$TMP/pki/client.key"
  pport=${proxy##*:}
  ;;
iam)
  step "proxy: efs-proxy run --fs-id (its own RSA-3072 key and IAM certificate, SigV4 from env credentials)"
  start_listener proxy proxy env -i PATH="$PATH" HOME="$TMP" AWS_EC2_METADATA_DISABLED=true \
    AWS_ACCESS_KEY_ID=AKIDE2ETEST AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY_E2E" \
    AWS_SESSION_TOKEN=e2e-session-token "$BIN_DIR/efs-proxy" run --log-level debug \
    --listen 127.0.0.1:0 --fs-id fs-0123456789abcdef0 --region us-east-1 --service s3files \
    --target "$target" --ca-file "$TMP/pki/ca.pem"
  pport=${proxy##*:}
  ;;
dropin)
  step "proxy: efs-proxy CONFIG --tls (efs-utils drop-in: config file, pid file, log file)"
  # The drop-in listens where its config says (as efs-utils writes it), so this script picks
  # the port; if something takes it between pick and bind, pick again (at most 3 times).
  for attempt in 1 2 3; do
    pport=$(free_port)
    # The config efs-utils 3.2.0 writes for an S3 Files mount, pointed at this test's files.
    cat >"$TMP/efs-proxy.conf" <<CONF
fips = no
foreground = yes
socket = l:SO_REUSEADDR=yes
socket = a:SO_BINDTODEVICE=lo
output = $TMP/proxy-file.log
pid = $TMP/stunnel.pid
[efs]
client = yes
accept = 127.0.0.1:$pport
connect = $target
sslVersion = TLSv1.2
renegotiation = no
TIMEOUTbusy = 20
TIMEOUTclose = 0
TIMEOUTidle = 70
delay = yes
verify = 2
CAfile = $TMP/pki/ca.pem
cert = $TMP/pki/client.pem
key = $TMP/pki/client.key
checkHost = $SERVER_NAME
retry_nfs_mount_command_timeout_sec = 15
proxy_logging_level = INFO
proxy_logging_max_bytes = 1048576
proxy_logging_file_count = 10
fs_id = fs-0123456789abcdef0
region = us-east-1
efs_utils_version = 3.2.0
CONF
    setsid "$BIN_DIR/efs-proxy" "$TMP/efs-proxy.conf" --tls >/dev/null 2>"$TMP/proxy-stderr.log" </dev/null &
    pids+=($!)
    wait_port "$pport" 10 && break
    if [ "$attempt" -eq 3 ] || ! grep -q "Address already in use" "$TMP/proxy-stderr.log"; then
      die "drop-in efs-proxy did not listen on 127.0.0.1:$pport"
    fi
    echo "port $pport was taken before the proxy bound it; picking another"
  done
  [ "$(cat "$TMP/stunnel.pid")" = "${pids[-1]}" ] || die "pid file does not hold the proxy's pid"
  # The rest of this script reads the proxy's log under one name.
  ln -s "$TMP/proxy-file.log" "$TMP/proxy.log"
  ;;
*) die "E2E_MODE must be native, iam, dropin or scaleup" 2 ;;
esac
echo "efs-proxy on 127.0.0.1:$pport (${E2E_MODE:-native} mode)"

step "nfs client: Linux kernel in QEMU, mount -t nfs4 -o nfsvers=4.2,port=$pport 10.0.2.2:/"
rc=0
NFS_PORT=$pport EXPORT_DIR=$GDIR/export "$HARNESS_DIR/run-guest.sh" | grep -E 'KVMNFS|PASS|FAIL|mount' || rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || die "the kernel client test failed (run-guest.sh exit $rc)" "$rc"

step "what each layer saw"
grep -q 'tls: handshake complete' "$TMP/target.log" || die "mount target saw no TLS handshake"
grep -q 'client_cert_bytes=[1-9]' "$TMP/target.log" || die "mount target saw no client certificate"
grep -q 'bind_client_to_partition received' "$TMP/target.log" || die "mount target saw no bind"
grep -q 'bind: READY' "$TMP/proxy.log" || die "proxy did not log a READY bind"
if [ "${E2E_MODE:-native}" = iam ]; then
  grep -q 'iam: client certificate accepted' "$TMP/target.log" ||
    die "mount target did not accept an IAM certificate"
  ! grep -q 'iam: refusing' "$TMP/target.log" || die "mount target refused an IAM certificate"
  ! grep -qF "$AWS_SECRET_ACCESS_KEY_E2E" "$TMP/proxy.log" "$TMP/target.log" ||
    die "the secret access key appears in a log"
  echo "iam:          $(grep -c 'iam: client certificate accepted' "$TMP/target.log") certificates made by the proxy passed the SigV4 check"
fi
if [ "${E2E_MODE:-native}" = scaleup ]; then
  grep -q 'scale-up: added connection' "$TMP/proxy.log" ||
    die "the proxy never scaled up (threshold 1 byte/s): the test did not test multiplexing"
  ! grep -q 'NFS4ERR_CONN_NOT_BOUND_TO_SESSION' "$TMP/target.log" ||
    die "ganesha answered NFS4ERR_CONN_NOT_BOUND_TO_SESSION: a COMPOUND went to a connection not bound to its session"
  echo "scale-up:     $(grep -c 'scale-up: added connection' "$TMP/proxy.log") connections added; no reply was NFS4ERR_CONN_NOT_BOUND_TO_SESSION"
fi
echo "mount target: $(grep -c 'client_cert_bytes=[1-9]' "$TMP/target.log") TLS handshakes with a client certificate, $(grep -c 'bind_client_to_partition received' "$TMP/target.log") binds"
echo "proxy:        $(grep -m1 'forwarding; bind' "$TMP/proxy.log" | sed 's/.*efs_proxy::proxy: //')"
echo "host:         $GDIR/export holds the guest's file with the same sha256"
log "PASS in $(elapsed "$t0") s"
