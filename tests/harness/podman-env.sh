# shellcheck shell=bash
# Podman for the image test, configured through the environment only (sourced, never
# executed): CONTAINERS_CONF names a copy of tests/harness/podman-containers.conf (runc,
# cgroupfs, ulimits the CI sandbox allows), CONTAINERS_STORAGE_CONF a storage.conf written
# here whose graphroot lives in the CI cache, so base images and build layers survive between
# CI runs.
# Nothing under /etc/containers or /var/lib/containers is read for settings or changed.
#
#   . tests/harness/lib.sh; . tests/harness/podman-env.sh
#
# env: CI_CACHE_DIR (default /var/cache/efs-proxy-ci); PODMAN_CACHE_DIR (default
#      $CI_CACHE_DIR/podman); PODMAN_STORAGE_DRIVER (overlay or vfs; default: overlay when the
#      kernel can mount it on the cache's filesystem, else vfs).
# Provides: PODMAN_CACHE_DIR, PODMAN_RUN_DIR, podman_setup.

PODMAN_CACHE_DIR=${PODMAN_CACHE_DIR:-${CI_CACHE_DIR:-/var/cache/efs-proxy-ci}/podman}
# Per-boot state (podman's runroot and tmp_dir) under /run (tmpfs, like podman's own
# /run/containers), one directory per graphroot: set by podman_setup.
PODMAN_RUN_DIR=

# overlay_works DIR: true when the kernel mounts overlayfs with upper/work dirs in DIR
# (native overlay is several times faster than vfs, which copies every layer in full).
overlay_works() {
  local t rc=1
  t=$(mktemp -d "$1/overlay-probe.XXXXXX") || return 1
  mkdir "$t/l" "$t/u" "$t/w" "$t/m"
  if mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" 2>/dev/null; then
    umount "$t/m" && rc=0
  fi
  rm -rf "$t"
  return "$rc"
}

# podman_setup: checks podman and runc, writes the storage.conf, exports the environment.
podman_setup() {
  need_cmd podman podman
  need_cmd runc runc
  mkdir -p "$PODMAN_CACHE_DIR/storage" ||
    die "cannot create $PODMAN_CACHE_DIR (run as root; or set PODMAN_CACHE_DIR or CI_CACHE_DIR)" 2
  local driver=${PODMAN_STORAGE_DRIVER:-}
  if [ -z "$driver" ]; then
    if overlay_works "$PODMAN_CACHE_DIR"; then driver=overlay; else driver=vfs; fi
  fi
  case $driver in
    overlay | vfs) ;;
    *) die "PODMAN_STORAGE_DRIVER=$driver: use overlay or vfs" 2 ;;
  esac
  # One graphroot per driver (podman refuses a graphroot made by another driver), and one
  # state directory per graphroot (podman's database records it when the graphroot is new).
  PODMAN_RUN_DIR=/run/efs-proxy-podman/$(printf '%s' "$PODMAN_CACHE_DIR/storage/$driver" | sha256sum | cut -c 1-12)
  mkdir -p "$PODMAN_RUN_DIR" || die "cannot create $PODMAN_RUN_DIR (run as root)" 2
  cat >"$PODMAN_CACHE_DIR/storage.conf" <<EOF
# Written by tests/harness/podman-env.sh; do not edit.
[storage]
driver = "$driver"
graphroot = "$PODMAN_CACHE_DIR/storage/$driver"
runroot = "$PODMAN_RUN_DIR/storage"
EOF
  sed "s|@RUN_DIR@|$PODMAN_RUN_DIR|" "$HARNESS_DIR/podman-containers.conf" >"$PODMAN_CACHE_DIR/containers.conf"
  export CONTAINERS_CONF=$PODMAN_CACHE_DIR/containers.conf
  export CONTAINERS_STORAGE_CONF=$PODMAN_CACHE_DIR/storage.conf
  PODMAN_STORAGE_DRIVER=$driver
}
