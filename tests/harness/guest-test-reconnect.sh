# shellcheck shell=dash
# Guest test (/test.sh) for fault injection during writes (tests/e2e/kernel-faults.sh): one
# hard NFSv4.2 mount, then one 32 MiB write per phase, during which the host breaks the
# connection (it watches the console for "KVMNFS: TRANSFER-START <phase>").
#
# Each write is a single `dd` into one open file, fed at a bounded pace (nfspace ms per MiB)
# and with small dirty-page limits, so WRITE calls are on the wire during the whole transfer
# (not only at the final fsync) and the host's fault lands in the middle of it. After each
# write: the sha256 written (KVMNFS-SHA256 <hex> <name>) and the transport's connect count
# from /proc/self/mountstats before and after (KVMNFS-RECONNECT). At the end: unmount, drop
# caches, remount and compare every file's sha256 read back from the server.
#
# Prints (parsed by run-guest.sh and kernel-faults.sh):
#     KVMNFS: TRANSFER-START <phase> at <uptime>s
#     KVMNFS: TRANSFER-DONE <phase> at <uptime>s took=<s>
#     KVMNFS-RECONNECT <phase> connect_count=<before>-><after>
#     KVMNFS-SHA256 <hex> <phase>.bin
#     KVMNFS-PASS <details> / KVMNFS-FAIL <reason>
# Parameters (kernel command line -> environment): nfsport (required), nfsopts (extra mount
# options), nfsmb (MiB per phase, default 32), nfsphases (comma-separated phase names, default
# fault), nfspace (ms per MiB fed to the writer, default 100), nfsmounttimeout (default 60 s).
set -u
PORT=${nfsport:-}
MB=${nfsmb:-32}
PHASES=$(echo "${nfsphases:-fault}" | tr ',' ' ')
PACE=${nfspace:-100}
MT=${nfsmounttimeout:-60}
OPTS="nfsvers=4.2,port=$PORT${nfsopts:+,$nfsopts}"
up() { cut -d' ' -f1 /proc/uptime; }
fail() {
  echo "KVMNFS-FAIL $*"
  echo "KVMNFS: last kernel messages:"
  dmesg | tail -n 20
  exit 1
}
case $PORT in '' | *[!0-9]*) fail "no valid nfsport= on the kernel command line (got '$PORT')" ;; esac
case $MB in '' | *[!0-9]*) fail "bad nfsmb= '$MB'" ;; esac
case $PACE in '' | *[!0-9]*) fail "bad nfspace= '$PACE'" ;; esac
case $MT in '' | *[!0-9]*) fail "bad nfsmounttimeout= '$MT'" ;; esac

do_mount() {
  if [ "$MT" = 0 ]; then
    mount -t nfs4 -o "$OPTS" 10.0.2.2:/ /mnt
  else
    timeout -s KILL "$MT" mount -t nfs4 -o "$OPTS" 10.0.2.2:/ /mnt
  fi
}
# connect_count: field 4 of "xprt: tcp <srcport> <bind_count> <connect_count> ..." for /mnt
connect_count() {
  awk '$1 == "device" { mine = ($5 == "/mnt") } mine && $1 == "xprt:" { print $5; exit }' /proc/self/mountstats
}

# Writeback starts at 256 KiB of dirty data and the writer is throttled at 1 MiB, so the
# transfer is on the wire while dd runs.
echo 262144 > /proc/sys/vm/dirty_background_bytes
echo 1048576 > /proc/sys/vm/dirty_bytes

echo "KVMNFS: mount -t nfs4 -o $OPTS 10.0.2.2:/ /mnt"
do_mount || fail "mount -t nfs4 -o $OPTS 10.0.2.2:/ /mnt failed or took over ${MT}s"
echo "KVMNFS: mounted at $(up)s"
grep ' /mnt ' /proc/mounts

pause=$(awk -v ms="$PACE" 'BEGIN { printf "%.3f", ms / 1000 }')
shas=
for phase in $PHASES; do
  name=$phase.bin
  dd if=/dev/urandom of="/tmp/$name" bs=1M count="$MB" 2>/dev/null || fail "cannot create /tmp/$name"
  want=$(sha256sum "/tmp/$name" | cut -d' ' -f1)
  before=$(connect_count)
  t0=$(up)
  echo "KVMNFS: TRANSFER-START $phase at ${t0}s"
  # One writer, one open file; its input arrives 1 MiB per $pause s at most.
  i=0
  while [ "$i" -lt "$MB" ]; do
    dd if="/tmp/$name" bs=1M skip="$i" count=1 2>/dev/null
    sleep "$pause"
    i=$((i + 1))
  done | dd of="/mnt/$name" bs=1M conv=fsync 2>/dev/null ||
    fail "write of /mnt/$name ($MB MiB) failed"
  t1=$(up)
  echo "KVMNFS: TRANSFER-DONE $phase at ${t1}s took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
  after=$(connect_count)
  echo "KVMNFS: $(grep -m1 'xprt:' /proc/self/mountstats)"
  echo "KVMNFS-RECONNECT $phase connect_count=$before->$after"
  echo "KVMNFS-SHA256 $want $name"
  shas="$shas $want:$name"
  rm -f "/tmp/$name"
done

umount /mnt || fail "umount after the writes failed"
echo 3 > /proc/sys/vm/drop_caches
do_mount || fail "remount failed or took over ${MT}s"
for pair in $shas; do
  want=${pair%%:*}
  name=${pair#*:}
  got=$(sha256sum "/mnt/$name" | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "sha256 mismatch for /mnt/$name after remount: wrote $want, read $got"
  echo "KVMNFS: read back /mnt/$name: sha256 matches"
done
dmesg | grep -iE 'nfs|rpc' | tail -n 8
umount /mnt || fail "final umount failed"
echo "KVMNFS-PASS survived the faults ($PHASES): $MB MiB each, sha256 intact after remount"
