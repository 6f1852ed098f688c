#!/usr/bin/env bash
# The mount helper end to end, run INSIDE the QEMU guest by the real kernel NFS client:
#
#   guest: mount -t s3files fs-…:/ /mnt/a -o awsprofile=e2e,region=us-east-1,target=10.0.2.2:T,…
#     └─ busybox mount(8) → /sbin/mount.s3files (efs-proxy, installed by install-mount-helper)
#          └─ supervisor + proxy on 127.0.0.1:P in the guest, then mount -t nfs4 … port=P
#   host (through slirp, 10.0.2.2 = host 127.0.0.1):
#     fake mount target A (fs-0123456789abcdef0: TLS, IAM certificate verified with the
#     profile's secret, bind READY) and B (fs-0123456789abcdef1), each relaying to its own nfs-ganesha
#
# The guest's cases (tests/e2e/mount-helper-guest.sh): 16 MiB write + read with sha256 and
# no proxy or state after umount; two file systems at once; the proxy SIGKILLed mid-write;
# an fstab line with mount -a. The host then checks ganesha's export and the mount target's
# log (IAM certificates accepted, none refused, the secret in no log).
#
#   tests/e2e/mount-helper.sh        (root; run tests/harness/install-deps.sh once)
#
# env: BIN_DIR (default: $CARGO_TARGET_DIR or ./target, /debug; E2E_PROFILE=release) holds
#      efs-proxy and fake-mount-target; KVMNFS_TIMEOUT (900); anything run-guest.sh reads.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=mount-helper  # log prefix used by lib.sh
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_root
need_cmd ganesha.nfsd nfs-ganesha
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd objcopy binutils

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/${E2E_PROFILE:-debug}}
for bin in efs-proxy fake-mount-target; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin not found: run 'cargo build --workspace --bins' first" 2
done

t0=$(now)
e2e_workdir efs-mount-helper
GDIR=$TMP/ganesha GDIR_B=$TMP/ganesha-b
# shellcheck disable=SC2317  # called by e2e_cleanup
e2e_teardown() {
  "$HARNESS_DIR/ganesha.sh" stop "$GDIR" 2>/dev/null || true
  "$HARNESS_DIR/ganesha.sh" stop "$GDIR_B" 2>/dev/null || true
}
step() { printf '\n== %s\n' "$*"; }

# Two servers, as two file systems are: with one ganesha behind both mount targets the guest's
# kernel sees one server (same server owner, same client id), carries the second file system's
# mount on the first one's client and connection, and the mount table then names the other
# proxy's port. Each ganesha's client ids start from its boot second: B starts a second later.
step "nfs servers: nfs-ganesha for A and for B"
gport=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR" "$gport" VFS >/dev/null
sleep 1
gport_b=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR_B" "$gport_b" VFS >/dev/null

# Test credentials, never real: the guest reads them from its ~/.aws/credentials.
SECRET="e2eMountHelperSecret/DoNotLog+$RANDOM$RANDOM"
mkdir -p "$TMP/aws"
printf '[e2e]\naws_access_key_id = AKIDE2EMOUNT\naws_secret_access_key = %s\n' "$SECRET" >"$TMP/aws/credentials"
chmod 600 "$TMP/aws/credentials"

step "mount targets A (IAM verified) and B"
ta='' tb=''
ta='' tb=''  # set by start_listener
# (The secret reaches the mount target through its environment, never its command line.)
FAKE_MOUNT_TARGET_IAM_SECRET=$SECRET start_listener ta target-a \
  "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki-a" --server-name fs-0123456789abcdef0.s3files.us-east-1.on.aws \
  --iam-fs-id fs-0123456789abcdef0 --iam-service s3files --iam-region us-east-1 \
  --iam-access-key-id AKIDE2EMOUNT --bind ready --backend "127.0.0.1:$gport"
start_listener tb target-b "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki-b" --server-name fs-0123456789abcdef1.s3files.us-east-1.on.aws \
  --bind ready --backend "127.0.0.1:$gport_b"
echo "A on $ta, B on $tb; the guest dials 10.0.2.2:${ta##*:} and 10.0.2.2:${tb##*:}"

# The guest gets the binary without its debug information (200 MB -> tens of MB of initramfs).
objcopy --strip-debug "$BIN_DIR/efs-proxy" "$TMP/efs-proxy"

step "guest: the helper inside QEMU (install, mount -t s3files, kill, fstab)"
rc=0
NFS_PORT=${ta##*:} EXPORT_DIR=$GDIR/export \
  KVMNFS_GUEST_TEST=$ROOT/tests/e2e/mount-helper-guest.sh \
  KVMNFS_APPEND="ta=10.0.2.2:${ta##*:} tb=10.0.2.2:${tb##*:}" \
  KVMNFS_MEM=${KVMNFS_MEM:-1024M} KVMNFS_TIMEOUT=${KVMNFS_TIMEOUT:-900} \
  SERIAL_LOG=$TMP/serial-live.log \
  GUEST_EXTRA_FILES="$TMP/efs-proxy:/usr/sbin/efs-proxy $TMP/pki-a/ca.pem:/etc/e2e/ca-a.pem $TMP/pki-b/ca.pem:/etc/e2e/ca-b.pem $TMP/aws:/root/.aws" \
  "$HARNESS_DIR/run-guest.sh" >"$TMP/guest.log" 2>&1 || rc=$?
grep -E 'KVMNFS|mount|MOUNTPOINT|fs-0' "$TMP/guest.log" | grep -v 'KVMNFS: insmod' || true
[ "$rc" = 0 ] || die "the guest test failed (run-guest.sh exit $rc)" "$rc"

step "what the mount targets saw"
grep -q 'iam: client certificate accepted' "$TMP/target-a.log" || die "A accepted no IAM certificate"
! grep -q 'iam: refusing' "$TMP/target-a.log" || die "A refused an IAM certificate"
! grep -qF "$SECRET" "$TMP/guest.log" "$TMP/target-a.log" "$TMP/target-b.log" ||
  die "the secret access key appears in a log"
echo "A: $(grep -c 'iam: client certificate accepted' "$TMP/target-a.log") IAM certificates accepted, $(grep -c 'bind_client_to_partition received' "$TMP/target-a.log") binds; B: $(grep -c 'bind_client_to_partition received' "$TMP/target-b.log") binds"
log "PASS in $(elapsed "$t0") s"
