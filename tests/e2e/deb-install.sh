#!/usr/bin/env bash
# The Debian package, installed where a user installs it: a clean Debian 12 system (a podman
# container from the locally made debian:bookworm-slim base image, with the slim image's
# "no man pages" dpkg filter removed, as on an ordinary install).
#
#   1. packaging/build-deb.sh builds target/debian/efs-proxy_<version>-1_amd64.deb;
#   2. `apt-get install /tmp/efs-proxy.deb man-db` (apt resolves the package's Depends from
#      the Debian mirror, as for a user);
#   3. `efs-proxy --version` prints this version; `man efs-proxy` and `man efs-proxy-mount`
#      render; the bash completion loads; `efs-proxy install-mount-helper` then
#      `mount.s3files --help` (the helper's own usage);
#   4. `dpkg -L efs-proxy` owns none of the files amazon-efs-utils' package owns
#      (/usr/bin/efs-proxy, /sbin/mount.efs, /sbin/mount.s3files, /usr/sbin/mount.*), and
#      /usr/bin/efs-proxy is the update-alternatives link to /usr/libexec/efs-proxy/efs-proxy;
#   5. `apt-get remove efs-proxy` takes /usr/bin/efs-proxy and the mount.s3files link away;
#   6. beside amazon-efs-utils (stand-ins for its real /usr/bin/efs-proxy and
#      /sbin/mount.s3files): install, install-mount-helper (refused without --force) and
#      remove leave both files as they were.
#
#   tests/e2e/deb-install.sh     (root; podman, runc, debootstrap, dpkg-dev:
#                                 tests/harness/install-deps.sh)
#
# env: CI_CACHE_DIR (podman storage and base images, as container-image.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=deb-install
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
# shellcheck source=tests/harness/podman-env.sh
. "$ROOT/tests/harness/podman-env.sh"
need_root
podman_setup
BASE=docker.io/library/debian:bookworm-slim
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)

t0=$(now)
e2e_workdir efs-deb-install
step() { printf '\n== %s (%s s)\n' "$*" "$(elapsed "$t0")"; }

step "build the package (packaging/build-deb.sh)"
deb=$(bash "$ROOT/packaging/build-deb.sh" 2>"$TMP/build.log") ||
  die "packaging/build-deb.sh failed (see $TMP/build.log)"
echo "$deb ($(du -h "$deb" | cut -f1))"
cp "$deb" "$TMP/efs-proxy.deb"

step "base image (tests/harness/podman-base-images.sh)"
bash "$ROOT/tests/harness/podman-base-images.sh" >"$TMP/base-images.log" 2>&1 ||
  die "making the base images failed (see $TMP/base-images.log)"

step "install, use and remove it in a clean Debian 12"
# The checks run inside the container; each failure names itself and exits non-zero.
cat >"$TMP/inside.sh" <<'INSIDE'
set -eu
fail() { echo "FAIL: $*"; exit 1; }
version=$1
# An ordinary Debian installs man pages: drop the slim image's dpkg filter that removes them.
rm -f /etc/dpkg/dpkg.cfg.d/docker
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends man-db /tmp/efs-proxy.deb >/tmp/apt.log 2>&1 ||
  { cat /tmp/apt.log; fail "apt-get install of the package failed"; }

out=$(efs-proxy --version) || fail "efs-proxy --version failed"
[ "$out" = "efs-proxy $version" ] || fail "efs-proxy --version printed '$out', want 'efs-proxy $version'"
echo "ok: efs-proxy --version: $out"

for page in efs-proxy efs-proxy-mount; do
  text=$(MANPAGER=cat MANWIDTH=100 man "$page" 2>&1) || fail "man $page failed: $text"
  case $text in *NAME*) ;; *) fail "man $page has no NAME section: $text" ;; esac
done
echo "ok: man efs-proxy and man efs-proxy-mount render"

bash -c '. /usr/share/bash-completion/completions/efs-proxy && complete -p efs-proxy' >/dev/null ||
  fail "the bash completion does not load"
echo "ok: the bash completion loads"

[ "$(readlink -f /usr/bin/efs-proxy)" = /usr/libexec/efs-proxy/efs-proxy ] ||
  fail "/usr/bin/efs-proxy does not lead to /usr/libexec/efs-proxy/efs-proxy"
update-alternatives --query efs-proxy | grep "^Value: /usr/libexec/efs-proxy/efs-proxy" >/dev/null ||
  fail "/usr/bin/efs-proxy is not the efs-proxy alternative"
if dpkg -L efs-proxy | grep -E '^(/usr/bin/efs-proxy|/s?bin/mount\.|/usr/s?bin/mount\.)'; then
  fail "the package owns a file that amazon-efs-utils' package owns (listed above)"
fi
echo "ok: dpkg -L owns no efs-utils path; /usr/bin/efs-proxy is an alternative"

efs-proxy install-mount-helper || fail "efs-proxy install-mount-helper failed"
help=$(mount.s3files --help 2>&1) || fail "mount.s3files --help failed: $help"
case $help in *[Uu]sage*) ;; *) fail "mount.s3files --help printed no usage: $help" ;; esac
echo "ok: install-mount-helper, then mount.s3files --help"

apt-get remove -y -qq efs-proxy >/tmp/remove.log 2>&1 || { cat /tmp/remove.log; fail "apt-get remove failed"; }
[ ! -e /usr/bin/efs-proxy ] && [ ! -L /usr/bin/efs-proxy ] ||
  fail "/usr/bin/efs-proxy is still there after apt-get remove"
[ ! -e /usr/libexec/efs-proxy/efs-proxy ] || fail "the binary is still there after apt-get remove"
[ ! -L /sbin/mount.s3files ] || fail "/sbin/mount.s3files (made by install-mount-helper) dangles after apt-get remove"
echo "ok: apt-get remove takes the binary, /usr/bin/efs-proxy and the mount helper link away"

# Beside amazon-efs-utils: its package's real /usr/bin/efs-proxy and /sbin/mount.s3files
# (stand-ins here: efs-utils is not in Debian) must survive installing and removing this one.
printf '#!/bin/sh\necho efs-utils-proxy\n' >/usr/bin/efs-proxy
printf '#!/bin/sh\necho efs-utils-helper\n' >/sbin/mount.s3files
chmod 755 /usr/bin/efs-proxy /sbin/mount.s3files
apt-get install -y -qq --no-install-recommends /tmp/efs-proxy.deb >/tmp/apt2.log 2>&1 ||
  { cat /tmp/apt2.log; fail "installing beside efs-utils' files failed"; }
[ "$(/usr/bin/efs-proxy)" = efs-utils-proxy ] || fail "installing replaced efs-utils' /usr/bin/efs-proxy"
/usr/libexec/efs-proxy/efs-proxy --version >/dev/null || fail "the binary does not run from /usr/libexec"
if /usr/libexec/efs-proxy/efs-proxy install-mount-helper >/tmp/helper.log 2>&1; then
  fail "install-mount-helper replaced efs-utils' /sbin/mount.s3files without --force"
fi
[ "$(/sbin/mount.s3files)" = efs-utils-helper ] || fail "efs-utils' /sbin/mount.s3files was changed"
apt-get remove -y -qq efs-proxy >/tmp/remove2.log 2>&1 || { cat /tmp/remove2.log; fail "apt-get remove failed"; }
[ "$(/usr/bin/efs-proxy)" = efs-utils-proxy ] && [ "$(/sbin/mount.s3files)" = efs-utils-helper ] ||
  fail "removing the package touched efs-utils' files"
echo "ok: beside efs-utils' /usr/bin/efs-proxy and /sbin/mount.s3files: both untouched by install, install-mount-helper (refused: $(head -c 120 /tmp/helper.log)) and remove"
INSIDE
podman run --rm --pull=never -v "$TMP/efs-proxy.deb:/tmp/efs-proxy.deb:ro" \
  -v "$TMP/inside.sh:/tmp/inside.sh:ro" "$BASE" sh /tmp/inside.sh "$VERSION" 2>&1 |
  tee "$TMP/inside.log"
[ "${PIPESTATUS[0]}" = 0 ] || die "the package test in the container failed (above)"

log "PASS in $(elapsed "$t0") s"
