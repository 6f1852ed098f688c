#!/bin/busybox sh
# shellcheck shell=dash
# /init (PID 1) of the e2e test guest (busybox sh; built into the initramfs by build-guest.sh).
#
# Kernel command-line words key=value that the kernel does not know arrive here as environment
# variables; run-guest.sh passes the test parameters that way (nfsport=, nfsopts=, nfsfile=,
# nfsmb=, plus anything in KVMNFS_APPEND).  Optional here: guestip (10.0.2.15), gateway
# (10.0.2.2 = the host's 127.0.0.1 through QEMU user-mode networking), debugmods=1.
#
# Loads the modules listed in /lib/mods/order, sets up eth0 statically (no DHCP, no DNS),
# runs /test.sh, prints "KVMNFS-RESULT rc=N" and powers the VM off (QEMU then exits).
# /test.sh prints KVMNFS-PASS / KVMNFS-FAIL itself; problems before it are reported here.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
up() { cut -d' ' -f1 /proc/uptime; }
finish() {
  echo "KVMNFS-RESULT rc=$1 at $(up)s guest uptime"
  sync
  poweroff -f
  sleep 5   # not reached; if it were, PID 1 exiting panics the kernel and QEMU stops (panic=-1, -no-reboot)
  exit "$1"
}
echo "KVMNFS: init up at $(up)s guest uptime, kernel $(uname -r)"
hostname "${guesthost:-efs-e2e-guest}"

while read -r m; do
  insmod "/lib/mods/$m.ko" || echo "KVMNFS: insmod $m failed"
  [ -n "${debugmods:-}" ] && echo "KVMNFS: $m loaded at $(up)s"
done < /lib/mods/order
echo "KVMNFS: modules loaded at $(up)s"

for _ in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
if [ ! -e /sys/class/net/eth0 ]; then
  echo "KVMNFS-FAIL guest has no eth0 (virtio_net not loaded? see the insmod lines above)"
  finish 98
fi
ip link set lo up
ip link set eth0 up
ip addr add "${guestip:-10.0.2.15}/24" dev eth0
ip route add default via "${gateway:-10.0.2.2}"
echo "KVMNFS: network up at $(up)s"

if [ -f /test.sh ]; then
  sh /test.sh
  rc=$?
else
  echo "KVMNFS-FAIL no /test.sh in the initramfs"
  rc=99
fi
finish "$rc"
