# shellcheck shell=dash
# Guest side of tests/e2e/mount-helper.sh (/test.sh in the QEMU guest, busybox sh, network up).
# The mount helper itself runs here: `efs-proxy install-mount-helper` makes
# /sbin/mount.s3files, and busybox mount(8) calls it for `mount -t s3files` and `mount -a`.
# Credentials: profile e2e in /root/.aws/credentials (awsprofile=e2e); the mount targets are
# the host's fake ones at 10.0.2.2 (target=), trusted through cafile=.
#
#   1. mount, write 16 MiB, plain umount (the proxy must leave within its grace period), mount
#      again, read back and compare sha256, efs-proxy umount: no process, no state
#   2. two file systems at once (two proxies on two ports), the first also at a second mount
#      point (sharing its proxy), 4 MiB each, all unmounted
#   3. the proxy SIGKILLed during a 24 MiB write: the supervisor restarts it on the same port,
#      the write completes, the data reads back intact after a remount
#   4. an fstab line and `mount -a`
#
# Kernel command line (-> environment): ta, tb (HOST:PORT of the two mount targets).
# Prints KVMNFS-SHA256 (case 1's file, checked by run-guest.sh in ganesha's export) and
# KVMNFS-PASS or KVMNFS-FAIL.
set -u
export HOME=/root AWS_EC2_METADATA_DISABLED=true PATH=/usr/sbin:/sbin:/bin:/usr/bin
FS_A=fs-0123456789abcdef0
FS_B=fs-0123456789abcdef1
OPTS_A="awsprofile=e2e,region=us-east-1,target=${ta:-},cafile=/etc/e2e/ca-a.pem,readytimeout=240"
OPTS_B="awsprofile=e2e,region=us-east-1,target=${tb:-},cafile=/etc/e2e/ca-b.pem,readytimeout=240"
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "KVMNFS: $* (at $(up)s)"; }
fail() {
  echo "KVMNFS-FAIL $*"
  for f in /run/efs-proxy/*/proxy.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
  dmesg | tail -n 10
  exit 1
}
# procs: true if a mount supervisor or proxy runs (zombies have an empty cmdline).
procs() {
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" in "efs-proxy mount-"*) return 0 ;; esac
  done
  return 1
}
# nothing_left SECS: no state and no process within SECS seconds.
nothing_left() {
  i=0
  while [ "$i" -le "$1" ]; do
    if [ -z "$(ls /run/efs-proxy 2>/dev/null)" ] && ! procs; then
      return 0
    fi
    sleep 1
    i=$((i + 1))
  done
  ls -la /run/efs-proxy/* 2>&1
  return 1
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
timed() { t0=$(up); "$@"; rc=$?; echo "$(awk -v a="$t0" -v b="$(up)" 'BEGIN { printf "%.1f", b - a }')s" >/tmp/took; return $rc; }

case ${ta:-} in 10.0.2.2:[0-9]*) ;; *) fail "no ta=10.0.2.2:PORT on the kernel command line" ;; esac
efs-proxy install-mount-helper || fail "install-mount-helper"
[ "$(readlink /sbin/mount.s3files)" = /usr/sbin/efs-proxy ] || fail "/sbin/mount.s3files is not the proxy"
mkdir -p /mnt/a /mnt/b
dd if=/dev/urandom of=/tmp/a.bin bs=1M count=16 2>/dev/null
dd if=/dev/urandom of=/tmp/k.bin bs=1M count=24 2>/dev/null
want=$(sha /tmp/a.bin)

say "1. mount -t s3files $FS_A:/ /mnt/a -o $OPTS_A"
timed mount -t s3files "$FS_A:/" /mnt/a -o "$OPTS_A" || fail "mount -t s3files failed"
say "mounted in $(cat /tmp/took)"
grep ' /mnt/a ' /proc/mounts
timed dd if=/tmp/a.bin of=/mnt/a/helper-16m.bin bs=1M conv=fsync 2>/dev/null || fail "write failed"
say "wrote 16 MiB in $(cat /tmp/took)"
echo "KVMNFS-SHA256 $want helper-16m.bin"
umount /mnt/a || fail "umount /mnt/a failed"
nothing_left 20 || fail "a proxy or its state is left 20 s after umount"
say "after a plain umount: no proxy, no state"
echo 3 >/proc/sys/vm/drop_caches
mount -t s3files "$FS_A:/" /mnt/a -o "$OPTS_A" || fail "second mount failed"
got=$(sha /mnt/a/helper-16m.bin)
[ "$got" = "$want" ] || fail "sha256 mismatch after remount: wrote $want, read $got"
say "read back 16 MiB, sha256 intact"
efs-proxy mounts
efs-proxy umount /mnt/a || fail "efs-proxy umount failed"
nothing_left 0 || fail "efs-proxy umount left a proxy or state"
say "efs-proxy umount: no proxy, no state at once"

say "2. two file systems at once, and the first one twice"
mkdir -p /mnt/c
mount -t s3files "$FS_A:/" /mnt/a -o "$OPTS_A" &
pa=$!
mount -t s3files "$FS_B:/" /mnt/b -o "$OPTS_B" || fail "mount of $FS_B failed"
wait "$pa" || fail "mount of $FS_A failed (concurrently)"
mount -t s3files "$FS_A:/" /mnt/c -o "$OPTS_A" || fail "second mount of $FS_A failed"
n=0
for d in /run/efs-proxy/*/; do [ -f "$d/mount.json" ] && n=$((n + 1)); done
[ "$n" = 2 ] || fail "expected two proxies (A shared by /mnt/a and /mnt/c, B), found $n"
head -c 4194304 /tmp/a.bin >/tmp/4m.bin
cp /tmp/4m.bin /mnt/a/two-a.bin || fail "write to /mnt/a failed"
cp /tmp/4m.bin /mnt/b/two-b.bin || fail "write to /mnt/b failed"
sync
efs-proxy mounts
[ "$(sha /mnt/b/two-b.bin)" = "$(sha /tmp/4m.bin)" ] || fail "two-b.bin differs"
[ "$(sha /mnt/c/two-a.bin)" = "$(sha /tmp/4m.bin)" ] || fail "two-a.bin differs through /mnt/c"
# /mnt/c shares A's proxy: unmounting it keeps that proxy; unmounting /mnt/a then stops it.
efs-proxy umount /mnt/c || fail "efs-proxy umount /mnt/c failed"
procs || fail "unmounting /mnt/c stopped the proxy /mnt/a still uses"
efs-proxy umount /mnt/b || fail "efs-proxy umount /mnt/b failed"
efs-proxy umount /mnt/a || fail "efs-proxy umount /mnt/a failed"
nothing_left 0 || fail "something left after the unmounts"
say "two proxies started, A shared by /mnt/a and /mnt/c, all unmounted, nothing left"

say "3. the proxy killed during a 24 MiB write"
mount -t s3files "$FS_A:/" /mnt/a -o "$OPTS_A" || fail "mount failed"
dir=$(ls -d /run/efs-proxy/*)
old=$(cat "$dir/proxy.pid")
dd if=/tmp/k.bin of=/mnt/a/killed.bin bs=1M conv=fsync 2>/dev/null &
dd_pid=$!
sleep 2
kill -0 "$dd_pid" 2>/dev/null || fail "the write finished before the kill: not a mid-write test"
kill -9 "$old"
say "killed proxy $old mid-write"
wait "$dd_pid" || fail "the write failed after the proxy was killed"
new=$(cat "$dir/proxy.pid")
[ "$new" != "$old" ] || fail "the proxy was not restarted"
say "write completed; the supervisor restarted the proxy ($old -> $new)"
umount /mnt/a || fail "umount failed"
echo 3 >/proc/sys/vm/drop_caches
mount -t s3files "$FS_A:/" /mnt/a -o "$OPTS_A" || fail "remount failed"
[ "$(sha /mnt/a/killed.bin)" = "$(sha /tmp/k.bin)" ] || fail "killed.bin corrupted"
efs-proxy umount /mnt/a || fail "efs-proxy umount failed"
nothing_left 0 || fail "something left"
say "24 MiB intact after the kill"

say "4. fstab and mount -a"
echo "$FS_A:/ /mnt/a s3files _netdev,$OPTS_A 0 0" >/etc/fstab
mount -a || fail "mount -a failed"
grep ' /mnt/a ' /proc/mounts || fail "mount -a did not mount /mnt/a"
[ "$(sha /mnt/a/helper-16m.bin)" = "$want" ] || fail "helper-16m.bin differs through the fstab mount"
umount /mnt/a || fail "umount failed"
nothing_left 20 || fail "a proxy or its state is left after umount of the fstab mount"
say "fstab mount through mount -a, unmounted, nothing left"
echo "KVMNFS-PASS mount helper: 16 MiB sha256 intact, two at once, proxy killed mid-write, fstab"
