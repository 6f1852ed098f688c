# shellcheck shell=dash
# Default guest test (/test.sh, run by guest-init.sh under busybox sh, network already up).
#
# Mounts the host's NFS port through QEMU user networking (guest 10.0.2.2 = host 127.0.0.1)
# with exactly
#     mount -t nfs4 -o nfsvers=4.2,port=$nfsport[,$nfsopts] 10.0.2.2:/ /mnt
# writes $nfsmb MiB of random data to /mnt/$nfsfile, records its sha256, unmounts, drops the
# caches, remounts and checks that the sha256 read back from the server matches.
#
# Prints (each on its own line, parsed by run-guest.sh):
#     KVMNFS-SHA256 <hex> <name>      right after the write: what the guest wrote
#     KVMNFS-PASS <details>           success, last line of the test
#     KVMNFS-FAIL <reason>            failure (then a dmesg tail)
# Parameters (kernel command line -> environment): nfsport (required), nfsopts (extra
# comma-separated mount options), nfsfile (default e2e-16m.bin), nfsmb (default 16),
# nfsmounttimeout (default 60 s; each mount is SIGKILLed after that, so a listener that
# never answers gives a KVMNFS-FAIL instead of a hang until the host's timeout; 0 = none).
set -u
PORT=${nfsport:-}
NAME=${nfsfile:-e2e-16m.bin}
MB=${nfsmb:-16}
MT=${nfsmounttimeout:-60}
OPTS="nfsvers=4.2,port=$PORT${nfsopts:+,$nfsopts}"
up() { cut -d' ' -f1 /proc/uptime; }
fail() {
  echo "KVMNFS-FAIL $*"
  echo "KVMNFS: last kernel messages:"
  dmesg | tail -n 15
  exit 1
}

case $PORT in '' | *[!0-9]*) fail "no valid nfsport= on the kernel command line (got '$PORT')" ;; esac
case $NAME in '' | */* | .*) fail "bad nfsfile= '$NAME' (plain file name expected)" ;; esac
case $MB in '' | *[!0-9]*) fail "bad nfsmb= '$MB'" ;; esac
case $MT in '' | *[!0-9]*) fail "bad nfsmounttimeout= '$MT'" ;; esac

# do_mount: the mount command, killed after $MT seconds (NFS mount waits are killable)
do_mount() {
  if [ "$MT" = 0 ]; then
    mount -t nfs4 -o "$OPTS" 10.0.2.2:/ /mnt
  else
    timeout -s KILL "$MT" mount -t nfs4 -o "$OPTS" 10.0.2.2:/ /mnt
  fi
}

echo "KVMNFS: mount -t nfs4 -o $OPTS 10.0.2.2:/ /mnt"
do_mount ||
  fail "mount -t nfs4 -o $OPTS 10.0.2.2:/ /mnt failed or took over ${MT}s (check the proxy/server on host 127.0.0.1:$PORT and its logs)"
echo "KVMNFS: mounted at $(up)s"
grep ' /mnt ' /proc/mounts

dd if=/dev/urandom of="/tmp/$NAME" bs=1M count="$MB" 2>/dev/null || fail "cannot create /tmp/$NAME"
want=$(sha256sum "/tmp/$NAME" | cut -d' ' -f1)
t0=$(up)
# conv=fsync: NFS write errors surface at fsync/close, make dd report them
dd if="/tmp/$NAME" of="/mnt/$NAME" bs=1M conv=fsync 2>/dev/null || fail "write of /mnt/$NAME ($MB MiB) failed"
sync
echo "KVMNFS: wrote $MB MiB in $(awk -v a="$t0" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }')s"
echo "KVMNFS-SHA256 $want $NAME"

umount /mnt || fail "umount after write failed"
echo 3 > /proc/sys/vm/drop_caches
do_mount || fail "remount failed or took over ${MT}s"
t0=$(up)
got=$(sha256sum "/mnt/$NAME" | cut -d' ' -f1)
[ -n "$got" ] || fail "read-back of /mnt/$NAME failed"
echo "KVMNFS: read back $MB MiB in $(awk -v a="$t0" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }')s"
[ "$got" = "$want" ] || fail "sha256 mismatch after remount: wrote $want, read $got"
ls -ln /mnt
umount /mnt || fail "final umount failed"
echo "KVMNFS-PASS nfsvers=4.2 wrote and read back $MB MiB /mnt/$NAME sha256=$want"
