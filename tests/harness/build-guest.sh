#!/usr/bin/env bash
# Build the QEMU guest that runs the Linux kernel NFSv4.2 client for the e2e tests:
# a Debian 12 kernel (taken from its .deb, never installed: /boot is not touched) and a small
# busybox initramfs with mount.nfs, the virtio-net + NFSv4 modules, /init and /test.sh.
#
#   build-guest.sh [OUT_DIR]      -> OUT_DIR/initrd.gz (default OUT_DIR: $KVMNFS_WORK)
#                                    kernel: $KVMNFS_WORK/kernel/vmlinux (or .../vmlinuz)
#
# Caching ($KVMNFS_WORK, default /var/tmp/efs-proxy-kvm, shared between runs, ~0.5 GB):
#   kernel/    the extracted kernel + its module tree.  Built once (~30 s, a 70 MB download);
#              kept until the directory is deleted or KVMNFS_KPKG names another package.
#   base.cpio.gz  busybox, mount.nfs + libraries, modules.  Rebuilt (~2 s) when the kernel,
#              the module list, /bin/busybox, /sbin/mount.nfs or this script change.
# Both are built under an flock, so parallel runs are safe.  Per run, only a small second
# cpio archive ("overlay") is made and appended: the kernel unpacks concatenated archives in
# order, later files win.  The overlay holds:
#   /init                     guest-init.sh
#   /test.sh                  $KVMNFS_GUEST_TEST (default: guest-test.sh beside this script)
#   GUEST_EXTRA_FILES         "hostpath:guestpath ..." (space-separated; no spaces or ':' in
#                             the paths; guestpath absolute).  hostpath may be a file or a
#                             directory (copied recursively, modes kept).  For dynamically
#                             linked ELF files the shared libraries that ldd lists are added
#                             too, at their host paths.
#
# env: KVMNFS_WORK, KVMNFS_GUEST_TEST, GUEST_EXTRA_FILES (see above)
#      GUEST_MODULES   extra kernel modules to load in the guest, space-separated (their
#                      dependencies are added and ordered automatically)
#      KVMNFS_KPKG     exact kernel package (default: what linux-image-amd64 depends on,
#                      e.g. linux-image-6.1.0-48-amd64).  The 6.1 kernel matters: with 6.12,
#                      ganesha 4.3's READ_PLUS replies make every NFSv4.2 read fail with EIO.
# Host packages (install-deps.sh): busybox-static, nfs-common, xz-utils, util-linux, and
# apt package lists (apt-get update) to find the kernel package.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_root

WORK=$KVMNFS_WORK
OUT=${1:-$WORK}
GUEST_TEST=${KVMNFS_GUEST_TEST:-$HARNESS_DIR/guest-test.sh}
BASE_MODULES="virtio_pci virtio_net nfsv4"

for c in busybox dpkg-deb apt-get xz flock gzip ldd sha256sum; do need_cmd "$c"; done
[ -x /sbin/mount.nfs ] || die "/sbin/mount.nfs missing (package nfs-common); run $HARNESS_DIR/install-deps.sh" 2
if ldd /bin/busybox >/dev/null 2>&1; then
  die "/bin/busybox is dynamically linked; the guest needs busybox-static (apt-get install busybox-static)" 2
fi
[ -f "$GUEST_TEST" ] || die "guest test script not found: $GUEST_TEST (KVMNFS_GUEST_TEST)" 2
[ -f "$HARNESS_DIR/guest-init.sh" ] || die "missing $HARNESS_DIR/guest-init.sh" 2
mkdir -p "$WORK" "$OUT"

# ---------------------------------------------------------------------------------------
# 1. Kernel (cached).  Resolve linux-image-amd64 -> linux-image-6.1.0-NN-amd64 (the ABI
#    number moves with point releases), `apt-get download` the .deb and unpack it.
fetch_kernel() {
  local pkg=$1 tmp kv off
  tmp=$(mktemp -d "$WORK/kdeb.XXXXXX")
  tmpdirs+=("$tmp")
  log "downloading kernel package $pkg (~70 MB, once)"
  # Sandbox::User=root: apt's _apt user may not be able to write into $tmp.
  if ! (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >/dev/null); then
    log "apt-get download $pkg failed; package lists may be stale, running apt-get update"
    apt-get -qq update || true
    (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >/dev/null) ||
      die "cannot download kernel package $pkg (check the Debian mirror in /etc/apt/sources.list*)"
  fi
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  kv=$(ls "$tmp/x/lib/modules")
  if [ -z "$kv" ] || [ ! -f "$tmp/x/boot/vmlinuz-$kv" ]; then
    die "unexpected layout in $pkg (no boot/vmlinuz-*)"
  fi
  rm -rf "$WORK/kernel.new"
  mkdir -p "$WORK/kernel.new/modules"
  cp "$tmp/x/boot/vmlinuz-$kv" "$WORK/kernel.new/vmlinuz"
  cp "$tmp/x/boot/config-$kv" "$WORK/kernel.new/config"
  mv "$tmp/x/lib/modules/$kv/kernel" "$WORK/kernel.new/modules/"
  cp "$tmp/x/lib/modules/$kv/modules.builtin" "$WORK/kernel.new/" 2>/dev/null || true
  # Uncompressed ELF vmlinux: QEMU boots it through its PVH entry point (CONFIG_PVH=y),
  # which skips the in-guest xz decompression of the bzImage (~8 s under TCG).
  off=$(LC_ALL=C grep -m 1 -obUaP '\xfd7zXZ\x00' "$WORK/kernel.new/vmlinuz" | cut -d: -f1) || true
  off=${off%%$'\n'*}
  # (process substitution, not a pipe: xz stops at the end of the stream, and tail's SIGPIPE
  # would fail a pipeline under pipefail)
  if [ -n "$off" ] &&
    xz -dc --single-stream < <(tail -c +"$((off + 1))" "$WORK/kernel.new/vmlinuz") > "$WORK/kernel.new/vmlinux" 2>/dev/null &&
    [ "$(head -c 4 "$WORK/kernel.new/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    :
  else
    log "could not extract an ELF vmlinux; the guest will boot the (slower) bzImage"
    rm -f "$WORK/kernel.new/vmlinux"
  fi
  echo "$kv" > "$WORK/kernel.new/version"
  echo "$pkg" > "$WORK/kernel.new/package"
  rm -rf "$WORK/kernel" "$tmp"
  mv "$WORK/kernel.new" "$WORK/kernel"
  log "kernel $kv cached in $WORK/kernel"
}

# ---------------------------------------------------------------------------------------
# 2. Base initramfs (cached).  Module load order comes from each .ko's .modinfo "depends="
#    string (no kmod/depmod needed); dependencies first.  .ko.xz/.ko.zst are decompressed.
declare -A ko_path=() ko_seen=()
ko_order=()
kocat() { case $1 in *.xz) xz -dc "$1" ;; *.zst) zstd -qdc "$1" ;; *) cat "$1" ;; esac; }
add_module() {
  local m=${1//-/_} d
  [ -z "${ko_seen[$m]:-}" ] || return 0
  ko_seen[$m]=1
  [ -n "${ko_path[$m]:-}" ] || return 0   # built into the kernel (or unknown: checked below)
  for d in $(kocat "${ko_path[$m]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$d"
  done
  ko_order+=("$m")
}

# is_builtin MODULE: true if MODULE is compiled into the kernel (or if that cannot be told)
is_builtin() {
  [ -f "$WORK/kernel/modules.builtin" ] || return 0
  grep -q "/${1//_/[-_]}\.ko$" "$WORK/kernel/modules.builtin"   # names use - or _
}

build_base() {
  local f n m lib root
  while IFS= read -r f; do
    n=${f##*/}; n=${n%.xz}; n=${n%.zst}; n=${n%.ko}
    ko_path[${n//-/_}]=$f
  done < <(find "$WORK/kernel/modules" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')
  for m in $BASE_MODULES ${GUEST_MODULES:-}; do
    m=${m//-/_}
    if [ -z "${ko_path[$m]:-}" ] && ! is_builtin "$m"; then
      die "kernel module '$m' (GUEST_MODULES) is neither a .ko in $WORK/kernel/modules nor built into kernel $(cat "$WORK/kernel/version")" 2
    fi
    add_module "$m"
  done

  root=$(mktemp -d "$WORK/base.XXXXXX")
  tmpdirs+=("$root")
  chmod 755 "$root"
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,mnt,tmp,etc,lib/mods}
  cp /bin/busybox "$root/bin/busybox"
  : > "$root/lib/mods/order"
  for m in "${ko_order[@]}"; do
    kocat "${ko_path[$m]}" > "$root/lib/mods/$m.ko"
    echo "$m" >> "$root/lib/mods/order"
  done
  # mount.nfs (dynamically linked) and its libraries.  busybox `mount -t nfs4` calls the
  # kernel directly; mount.nfs is there for tests that want the nfs-utils behaviour.
  cp /sbin/mount.nfs "$root/sbin/mount.nfs"
  ln -s mount.nfs "$root/sbin/mount.nfs4"
  for lib in $(ldd /sbin/mount.nfs | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  : > "$root/etc/fstab"
  # mount.nfs needs getprotobyname() and libtirpc's netconfig ("Failed to find 'tcp' protocol")
  for f in /etc/protocols /etc/netconfig /etc/services; do
    if [ -f "$f" ]; then cp "$f" "$root/etc/"; fi
  done
  (cd "$root" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) > "$WORK/base.cpio.gz.new"
  mv "$WORK/base.cpio.gz.new" "$WORK/base.cpio.gz"
  rm -rf "$root"
  log "base initramfs: kernel $(cat "$WORK/kernel/version"), modules: ${ko_order[*]}"
}

base_stamp() {
  {
    cat "$WORK/kernel/version"
    echo "$BASE_MODULES ${GUEST_MODULES:-}"
    sha256sum /bin/busybox /sbin/mount.nfs "$HARNESS_DIR/build-guest.sh"
  } | sha256sum | cut -d' ' -f1
}

(
  tmpdirs=()
  trap 'rm -rf "${tmpdirs[@]}" "$WORK/kernel.new" "$WORK/base.cpio.gz.new"' EXIT
  flock -w 900 9 || die "timed out waiting for the lock on $WORK/.lock (another build running?)"
  want_pkg=${KVMNFS_KPKG:-}
  if [ ! -f "$WORK/kernel/version" ] ||
    { [ -n "$want_pkg" ] && [ "$want_pkg" != "$(cat "$WORK/kernel/package" 2>/dev/null)" ]; }; then
    if [ -z "$want_pkg" ]; then
      deps=$(apt-cache depends linux-image-amd64 2>/dev/null) || true
      want_pkg=$(awk '/Depends: linux-image-[0-9]/ { print $2; exit }' <<<"$deps")
      [ -n "$want_pkg" ] || die "cannot resolve the kernel package from linux-image-amd64: run apt-get update (or $HARNESS_DIR/install-deps.sh), or set KVMNFS_KPKG"
    fi
    fetch_kernel "$want_pkg"
  fi
  stamp=$(base_stamp)
  if [ ! -f "$WORK/base.cpio.gz" ] || [ "$stamp" != "$(cat "$WORK/base.stamp" 2>/dev/null)" ]; then
    build_base
    echo "$stamp" > "$WORK/base.stamp"
  fi
  # copy under the lock: a parallel build with other GUEST_MODULES may replace the base
  cp "$WORK/base.cpio.gz" "$OUT/base.cpio.gz"
) 9>"$WORK/.lock"

# ---------------------------------------------------------------------------------------
# 3. Per-run overlay: /init, /test.sh, GUEST_EXTRA_FILES (+ their shared libraries).
ov=$(mktemp -d "$OUT/overlay.XXXXXX")
trap 'rm -rf "$ov"' EXIT
chmod 755 "$ov"
install -m 755 "$HARNESS_DIR/guest-init.sh" "$ov/init"
install -m 755 "$GUEST_TEST" "$ov/test.sh"

# add_libs FILE: copy the shared libraries of a dynamically linked ELF FILE into the overlay.
add_libs() {
  local lib
  [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 0
  ldd "$1" >/dev/null 2>&1 || return 0   # static, or not an executable
  for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
    [ -e "$ov$lib" ] && continue
    mkdir -p "$ov$(dirname "$lib")"
    cp -L "$lib" "$ov$lib"
  done
}

for pair in ${GUEST_EXTRA_FILES:-}; do
  src=${pair%%:*}
  dst=${pair#*:}
  if [ "$src" = "$pair" ] || [ -z "$src" ] || [ "${dst:0:1}" != / ]; then
    die "GUEST_EXTRA_FILES entry '$pair' is not hostpath:/absolute/guestpath" 2
  fi
  [ -e "$src" ] || die "GUEST_EXTRA_FILES: host file '$src' does not exist" 2
  mkdir -p "$ov$(dirname "$dst")"
  cp -a "$src" "$ov$dst"
  while IFS= read -r -d '' f; do add_libs "$f"; done < <(find "$ov$dst" -type f -perm /111 -print0)
done

(cd "$ov" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) > "$OUT/overlay.cpio.gz"
cat "$OUT/base.cpio.gz" "$OUT/overlay.cpio.gz" > "$OUT/initrd.gz.new"
mv "$OUT/initrd.gz.new" "$OUT/initrd.gz"
rm -f "$OUT/base.cpio.gz" "$OUT/overlay.cpio.gz"
log "initrd $OUT/initrd.gz ($(du -h "$OUT/initrd.gz" | cut -f1)), kernel $(cat "$WORK/kernel/version")"
