#!/usr/bin/env bash
# Makes the two base images container/Dockerfile names, locally, because Docker Hub is not
# reachable from CI: both from Debian packages (the Debian mirror is), tagged under the names
# the Dockerfile's FROM lines resolve to, so `podman build --pull=never` builds the real,
# unchanged Dockerfile.
#
#   docker.io/library/debian:bookworm-slim   debootstrap --variant=minbase bookworm, trimmed like
#                                            Debian's official slim image (no docs, man pages,
#                                            locales; apt cleans its caches), podman import.
#   docker.io/library/rust:1-bookworm        the same root file system + gcc, libc6-dev,
#                                            pkg-config, ca-certificates (with this host's CA
#                                            certificates, for cargo behind a TLS-intercepting
#                                            proxy) + this machine's Rust toolchain (cargo, rustc
#                                            and their libraries; no docs, clippy or rustfmt) at
#                                            the official image's paths and ENV.
#
#   tests/harness/podman-base-images.sh [--force]
#
# Reuse: the images live in podman's storage under $CI_CACHE_DIR/podman (podman-env.sh). An
# image is made again when missing, when --force is given, when older than
# BASE_IMAGE_MAX_AGE_DAYS (default 30: security updates), or (rust) when the host's rustc
# or CA certificates changed (recorded as image labels). The debootstrap root file system is
# kept as a tarball beside the storage, so the rust image reuses it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=podman-base-images
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
# shellcheck source=tests/harness/podman-env.sh
. "$ROOT/tests/harness/podman-env.sh"

DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
MAX_AGE_DAYS=${BASE_IMAGE_MAX_AGE_DAYS:-30}
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

need_root
need_cmd debootstrap debootstrap
podman_setup
MINBASE_TAR=$PODMAN_CACHE_DIR/bookworm-minbase.tar

# image_fresh IMAGE [LABEL VALUE]: the image exists, is younger than MAX_AGE_DAYS, and (if
# given) carries LABEL=VALUE.
image_fresh() {
  [ "$FORCE" = 0 ] || return 1
  podman image exists "$1" || return 1
  local created age
  created=$(podman image inspect --format '{{.Created.Unix}}' "$1") || return 1
  age=$(( ($(date +%s) - created) / 86400 ))
  [ "$age" -lt "$MAX_AGE_DAYS" ] || { log "$1 is $age days old: making it again"; return 1; }
  if [ $# -ge 3 ]; then
    local have
    have=$(podman image inspect --format "{{index .Labels \"$2\"}}" "$1")
    [ "$have" = "$3" ] || { log "$1: label $2 is '$have', want '$3': making it again"; return 1; }
  fi
}

# slim ROOTFS: what debuerreotype does for Debian's official -slim images: dpkg excludes
# docs, man pages and locales (and the files are removed now), apt keeps no caches or
# translations, the sources are bookworm + updates + security, no services start.
slim() {
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$r/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 0755 "$r/usr/sbin/policy-rc.d"
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
    "$r"/var/log/* "$r"/tmp/* "$r"/root/.bash_history "$r/etc/machine-id"
  : >"$r/etc/hostname"
}

make_minbase_tar() {
  if [ "$FORCE" = 0 ] && [ -s "$MINBASE_TAR" ] &&
    [ -z "$(find "$MINBASE_TAR" -mtime "+$MAX_AGE_DAYS" 2>/dev/null)" ]; then
    return 0
  fi
  local t0 dir
  t0=$(now)
  dir=$(mktemp -d "$PODMAN_CACHE_DIR/rootfs.XXXXXX")
  log "debootstrap --variant=minbase bookworm from $MIRROR (about 30 s-2 min)"
  debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >"$dir.log" 2>&1 ||
    die "debootstrap failed (log: $dir.log): is $MIRROR reachable? (set DEBIAN_MIRROR)"
  slim "$dir"
  tar --numeric-owner --xattrs -C "$dir" -cf "$MINBASE_TAR.tmp" .
  mv "$MINBASE_TAR.tmp" "$MINBASE_TAR"
  rm -rf "$dir" "$dir.log"
  log "root file system: $MINBASE_TAR ($(du -m "$MINBASE_TAR" | cut -f1) MB) in $(elapsed "$t0") s"
}

make_debian() {
  image_fresh "$DEBIAN_IMAGE" && { log "$DEBIAN_IMAGE: present"; return 0; }
  make_minbase_tar
  podman import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase bookworm (tests/harness/podman-base-images.sh)" \
    "$MINBASE_TAR" "$DEBIAN_IMAGE" >"$PODMAN_CACHE_DIR/import.log" 2>&1 ||
    die "podman import of $MINBASE_TAR failed: $(tail -n 3 "$PODMAN_CACHE_DIR/import.log")"
  log "$DEBIAN_IMAGE: imported"
}

make_rust() {
  local sysroot rustc_v ca_sum
  sysroot=$(rustc --print sysroot) || die "rustc not found: the rust base image copies this machine's toolchain" 2
  rustc_v=$(rustc -V)
  # The host's extra CA certificates (a TLS-intercepting egress proxy's), if any.
  ca_sum=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)
  image_fresh "$RUST_IMAGE" efs-proxy.rustc "$rustc_v" &&
    image_fresh "$RUST_IMAGE" efs-proxy.host-ca "$ca_sum" && { log "$RUST_IMAGE: present ($rustc_v)"; return 0; }
  local ver ctx t0 old
  ver=$(rustc -V | awk '{print $2}')
  [ -x "$sysroot/bin/cargo" ] || die "$sysroot/bin/cargo not found: install cargo in that toolchain" 2
  ctx=$(mktemp -d "$PODMAN_CACHE_DIR/rust-context.XXXXXX")
  mkdir -p "$ctx/toolchain/bin" "$ctx/ca"
  # Hard links where the file system allows (same disk), else copies: ~0.6 GB.
  cp -al "$sysroot/lib" "$ctx/toolchain/" 2>/dev/null || cp -a "$sysroot/lib" "$ctx/toolchain/"
  cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$sysroot/bin/rustdoc" "$ctx/toolchain/bin/"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  local tc=/usr/local/rustup/toolchains/$ver-x86_64-unknown-linux-gnu
  cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
    && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config ca-certificates make \\
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$ver
COPY toolchain/ $tc/
RUN mkdir -p /usr/local/cargo/bin \\
    && ln -s $tc/bin/cargo $tc/bin/rustc $tc/bin/rustdoc /usr/local/cargo/bin/ \\
    && cargo --version && rustc --version
LABEL efs-proxy.rustc="$rustc_v" efs-proxy.host-ca="$ca_sum"
CMD ["bash"]
EOF
  t0=$(now)
  old=$(podman image inspect --format '{{.Id}}' "$RUST_IMAGE" 2>/dev/null || true)
  log "building $RUST_IMAGE ($rustc_v from $sysroot)"
  if ! podman build --pull=never --network host --format docker --layers=false \
    -t "$RUST_IMAGE" -f "$ctx/Containerfile" "$ctx" >"$PODMAN_CACHE_DIR/rust-image-build.log" 2>&1; then
    rm -rf "$ctx"
    die "building $RUST_IMAGE failed; log: $PODMAN_CACHE_DIR/rust-image-build.log"
  fi
  rm -rf "$ctx"
  # The replaced image (now untagged) is removed; nothing else is pruned, so the layer
  # cache of the project's own builds stays.
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$RUST_IMAGE")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
  log "$RUST_IMAGE: built in $(elapsed "$t0") s"
}

t_start=$(now)
log "storage: $PODMAN_STORAGE_DRIVER under $PODMAN_CACHE_DIR"
make_debian
make_rust
log "base images ready in $(elapsed "$t_start") s: $(podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'library/(debian|rust)' | paste -sd ',' | sed 's/,/, /g')"
