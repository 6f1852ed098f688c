# shellcheck shell=dash
# Guest side of tests/bench/kernel.sh (/test.sh in the QEMU guest, busybox sh, network up).
#
# For each round and each forwarder (order rotated by one per round), with the Linux kernel
# NFSv4.2 client:
#   mount -t nfs4 -o nfsvers=4.2,port=P,rsize=1048576,wsize=1048576,hard,timeo=600 10.0.2.2:/ /mnt
#   WRITE: dd bs=1M conv=fsync of a pre-generated /tmp file (kbmib MiB) to /mnt, timed; umount
#   drop the caches, mount again
#   READ:  dd of the file to /dev/null, timed; sha256 of what was read must match; rm; umount
# Times come from /proc/uptime (10 ms resolution), the same clock guest-test.sh uses.
#
# Kernel command line (-> environment):
#   kbfwd     NAME:PORT,NAME:PORT,...  the forwarders, in the order of round 1 (required)
#   kbrounds  rounds (default 3)
#   kbmib     MiB per transfer (default 64)
#   nfsmounttimeout  seconds each mount may take before KVMNFS-FAIL (default 60; 0 = none)
# Prints, one line per forwarder and round (parsed by kernel.sh):
#   KVMBENCH <name> <round> <write_s> <read_s>
# then KVMNFS-PASS, or KVMNFS-FAIL <reason> (then a dmesg tail).
set -u
FWDS=${kbfwd:-}
ROUNDS=${kbrounds:-3}
MIB=${kbmib:-64}
MT=${nfsmounttimeout:-60}
OPTS_BASE="nfsvers=4.2,rsize=1048576,wsize=1048576,hard,timeo=600"
up() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }'; }
fail() {
  echo "KVMNFS-FAIL $*"
  echo "KVMNFS: last kernel messages:"
  dmesg | tail -n 15
  exit 1
}

case $ROUNDS in '' | *[!0-9]* | 0) fail "bad kbrounds= '$ROUNDS'" ;; esac
case $MIB in '' | *[!0-9]* | 0) fail "bad kbmib= '$MIB'" ;; esac
case $MT in '' | *[!0-9]*) fail "bad nfsmounttimeout= '$MT'" ;; esac
# The forwarders as positional parameters "name:port ..."
# shellcheck disable=SC2046  # split on the commas on purpose
set -- $(echo "$FWDS" | tr ',' ' ')
[ $# -gt 0 ] || fail "no kbfwd=NAME:PORT,... on the kernel command line"
for f in "$@"; do
  case $f in [a-z]*:[0-9]*) ;; *) fail "bad kbfwd entry '$f' (NAME:PORT expected)" ;; esac
done
N=$#

# do_mount PORT: the mount, SIGKILLed after $MT seconds (NFS mount waits are killable)
do_mount() {
  if [ "$MT" = 0 ]; then
    mount -t nfs4 -o "$OPTS_BASE,port=$1" 10.0.2.2:/ /mnt
  else
    timeout -s KILL "$MT" mount -t nfs4 -o "$OPTS_BASE,port=$1" 10.0.2.2:/ /mnt
  fi
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

SRC=/tmp/kbench.bin
dd if=/dev/urandom of="$SRC" bs=1M count="$MIB" 2>/dev/null || fail "cannot create $SRC ($MIB MiB)"
want=$(sha256sum "$SRC" | cut -d' ' -f1)
echo "KVMNFS: $N forwarders, $ROUNDS rounds, $MIB MiB each way, mount -o $OPTS_BASE,port=P"

r=1
while [ "$r" -le "$ROUNDS" ]; do
  i=0
  while [ "$i" -lt "$N" ]; do
    # rotation: round r starts with forwarder (r-1) mod N
    k=$(((r - 1 + i) % N + 1))
    eval "f=\${$k}"
    # shellcheck disable=SC2154  # f is set by the eval
    name=${f%%:*} port=${f#*:}
    file=/mnt/kbench-$name-$r.bin
    drop
    do_mount "$port" || fail "$name: mount on port $port failed or took over ${MT}s"
    t0=$(up)
    dd if="$SRC" of="$file" bs=1M conv=fsync 2>/dev/null || fail "$name: write of $file failed"
    w=$(since "$t0")
    umount /mnt || fail "$name: umount after the write failed"
    drop
    do_mount "$port" || fail "$name: remount on port $port failed or took over ${MT}s"
    t0=$(up)
    dd if="$file" of=/dev/null bs=1M 2>/dev/null || fail "$name: read of $file failed"
    rd=$(since "$t0")
    got=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$got" = "$want" ] || fail "$name: sha256 mismatch in round $r: wrote $want, read $got"
    rm -f "$file" || fail "$name: rm $file failed"
    umount /mnt || fail "$name: final umount failed"
    echo "KVMBENCH $name $r $w $rd"
    i=$((i + 1))
  done
  r=$((r + 1))
done
echo "KVMNFS-PASS kernel bench: $N forwarders x $ROUNDS rounds, $MIB MiB each way, sha256 intact"
