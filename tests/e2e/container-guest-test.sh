# shellcheck shell=dash
# Guest side of tests/e2e/container-guest.sh (/test.sh in the QEMU guest, busybox sh, network
# up): the container's payload without Docker. Runs the real container/entrypoint.sh with the
# release efs-proxy and efs-webdav, pointed at the host's fake mount target through
# EFS_PROXY_ARGS, so it mounts NFSv4.2 through the proxy exactly as in the image and serves
# WebDAV on 0.0.0.0:8080 (QEMU forwards a host port to it).
#
# Then it waits while the host runs litmus and uploads over WebDAV, until the host PUTs
# /e2e-host-done (containing "NAME SHA256" of its upload); the guest checks that file through
# its own mount, prints KVMNFS-SHA256 for run-guest.sh's check of ganesha's export, checks the
# health command, sends SIGTERM to the entrypoint and checks the clean stop: exit 0, nothing
# mounted, no proxy or WebDAV process left. Prints KVMNFS-PASS or KVMNFS-FAIL.
#
# First, a failing start (unreachable target): the entrypoint must name the layer and the fix,
# exit 1 and leave no process or mount behind (failcase=0 skips it).
#
# Kernel command line (-> environment): nfsport (the fake mount target's host port),
# servername (its TLS name), webdavport (the host port QEMU forwards to WebDAV, default 8080),
# donetimeout (seconds to wait for the host, default 600),
# failcase (1 = run the failing start first, default).
set -u
PORT=${nfsport:-}
NAME=${servername:-}
WAIT=${donetimeout:-600}
MNT=/mnt/s3files
export PATH=/usr/local/bin:$PATH
up() { cut -d' ' -f1 /proc/uptime; }
fail() {
  echo "KVMNFS-FAIL $*"
  echo "KVMNFS: entrypoint log tail:"
  tail -n 30 /tmp/entrypoint.log 2>/dev/null
  dmesg | tail -n 10
  exit 1
}
case $PORT in '' | *[!0-9]*) fail "no valid nfsport= (got '$PORT')" ;; esac
[ -n "$NAME" ] || fail "no servername= on the kernel command line"
for f in /usr/local/bin/efs-proxy /usr/local/bin/efs-webdav /usr/local/bin/entrypoint.sh /pki/ca.pem /pki/client.pem /pki/client.key; do
  [ -e "$f" ] || fail "missing $f in the initramfs (GUEST_EXTRA_FILES)"
done

# 1. A failing start: nothing listens on the target port (host port 1 through slirp). The
#    entrypoint must give up within MOUNT_TIMEOUT, name the failing layer and its fix, exit 1
#    and leave nothing behind.
if [ "${failcase:-1}" = 1 ]; then
  echo "KVMNFS: failing start (unreachable target) at $(up)s"
  EFS_PROXY_ARGS="--target 10.0.2.2:1 --server-name $NAME --ca-file /pki/ca.pem --cert /pki/client.pem --key /pki/client.key" \
    MOUNT_POINT=$MNT STATE_DIR=/run/s3files-fail MOUNT_TIMEOUT=15 WEBDAV_LISTEN=0.0.0.0:8080 \
    /usr/local/bin/entrypoint.sh >/tmp/entrypoint-fail.log 2>&1
  rc=$?
  { grep -m 1 'layer=' /tmp/entrypoint-fail.log; grep '^entrypoint' /tmp/entrypoint-fail.log; } |
    cut -c 1-220 | sed 's/^/  fail-case: /'
  [ "$rc" = 1 ] || fail "entrypoint.sh with an unreachable target exited $rc (expected 1)"
  grep -q '^entrypoint: fix: TCP 2049' /tmp/entrypoint-fail.log ||
    fail "entrypoint.sh did not diagnose the unreachable target (no 'fix: TCP 2049' line)"
  ! grep -q " $MNT " /proc/mounts || fail "$MNT mounted after a failed start"
  for p in efs-proxy efs-webdav; do
    ! pidof "$p" >/dev/null || fail "$p left running after a failed start"
  done
  echo "KVMNFS: failing start diagnosed and cleaned up at $(up)s"
fi

# 2. The real start.
export EFS_PROXY_ARGS="--target 10.0.2.2:$PORT --server-name $NAME --ca-file /pki/ca.pem --cert /pki/client.pem --key /pki/client.key"
export WEBDAV_LISTEN=0.0.0.0:8080 MOUNT_POINT=$MNT STATE_DIR=/run/s3files MOUNT_TIMEOUT=60 READY_TIMEOUT=60
# The host reaches WebDAV through QEMU's forward of another port: efs-webdav accepts only a
# Host naming the port clients use (its guard against DNS rebinding).
export WEBDAV_PUBLIC_PORT=${webdavport:-8080}
echo "KVMNFS: starting entrypoint.sh at $(up)s"
: >/tmp/entrypoint.log
/usr/local/bin/entrypoint.sh >/tmp/entrypoint.log 2>&1 &
ep=$!
tail -f /tmp/entrypoint.log &
tailer=$!

n=0
until grep -q '^entrypoint: ready' /tmp/entrypoint.log; do
  kill -0 "$ep" 2>/dev/null || { sleep 1; fail "entrypoint.sh exited before it was ready"; }
  n=$((n + 1))
  [ "$n" -le 1200 ] || fail "entrypoint.sh not ready within 120 s"
  sleep 0.1
done
echo "KVMNFS: container ready at $(up)s"
grep " $MNT " /proc/mounts
grep -q " $MNT nfs4 .*vers=4.2" /proc/mounts || fail "$MNT is not an NFSv4.2 mount"
/usr/local/bin/entrypoint.sh health || fail "entrypoint.sh health failed while ready"

echo "KVMNFS: waiting up to ${WAIT}s for the host's WebDAV tests (marker $MNT/e2e-host-done)"
n=0
until [ -s "$MNT/e2e-host-done" ]; do
  kill -0 "$ep" 2>/dev/null || fail "entrypoint.sh exited while the host was testing"
  n=$((n + 1))
  [ "$n" -le "$WAIT" ] || fail "no e2e-host-done marker from the host within ${WAIT}s"
  sleep 1
done
read -r file want <"$MNT/e2e-host-done"
echo "KVMNFS: host done at $(up)s: $file $want"
case $file in '' | */* | .*) fail "bad file name in the marker: '$file'" ;; esac
got=$(sha256sum "$MNT/$file" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "$MNT/$file has sha256 $got, the host uploaded $want"
echo "KVMNFS-SHA256 $got $file"
for junk in "._$file" .DS_Store; do
  [ ! -e "$MNT/$junk" ] || fail "Finder metadata file $junk reached the NFS mount"
done

echo "KVMNFS: SIGTERM to entrypoint.sh at $(up)s"
kill -TERM "$ep"
n=0
while kill -0 "$ep" 2>/dev/null; do
  n=$((n + 1))
  [ "$n" -le 600 ] || fail "entrypoint.sh still running 60 s after SIGTERM"
  sleep 0.1
done
wait "$ep"
rc=$?
sleep 1.2 # busybox tail -f polls once a second: let it show the last lines
kill "$tailer" 2>/dev/null
[ "$rc" = 0 ] || fail "entrypoint.sh exited with $rc after SIGTERM (expected 0)"
! grep -q " $MNT " /proc/mounts || fail "$MNT still mounted after SIGTERM"
for p in efs-proxy efs-webdav; do
  ! pidof "$p" >/dev/null || fail "$p still running after SIGTERM"
done
grep -q '^entrypoint: unmounted' /tmp/entrypoint.log || fail "no 'unmounted' line from entrypoint.sh"
echo "KVMNFS: stopped cleanly at $(up)s"
echo "KVMNFS-PASS entrypoint.sh: NFSv4.2 through efs-proxy, WebDAV on :8080, $file sha256=$got, clean SIGTERM"
