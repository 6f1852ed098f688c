#!/usr/bin/env bash
# Idempotent host setup for the efs-proxy e2e harness on Debian 12 (run as root).
#
#   tests/harness/install-deps.sh        # installs what is missing, prints what it did
#
# Installs only the packages that are not installed yet, with --no-install-recommends, and
# runs `apt-get update` only when needed: when the package lists are empty, when a missing
# package has no install candidate, or when an install fails (stale lists after a point
# release, 404 from the mirror) -- then it updates once and retries.
# The lists must exist afterwards: build-guest.sh resolves the guest kernel package with
# apt-cache.  Debian images often ship /usr/sbin/policy-rc.d (exit 101), so apt starts no
# daemons (rpcbind, nfs-ganesha); nothing in the harness needs systemd, rpcbind or dbus.
#
# Extra packages: EXTRA_PKGS="tshark ..." tests/harness/install-deps.sh
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_root

# shellcheck disable=SC2206  # EXTRA_PKGS is word-split on purpose
pkgs=(
  nfs-ganesha nfs-ganesha-vfs nfs-ganesha-mem  # userspace NFSv4.x server on 127.0.0.1
  nfs-common                                   # mount.nfs, copied into the guest initramfs
  qemu-system-x86                              # guest running the Linux kernel NFS client (TCG)
  busybox-static                               # guest userland; also our cpio
  socat stunnel4                               # stand-in proxy / TLS terminators
  nftables iproute2                            # fault injection (nft drop), ss, ip netns
  libnfs-utils                                 # nfs-ls/nfs-cat/nfs-cp (NFSv3 + NFSv4.0 only)
  rpcbind linux-perf openssl                   # benchmark: ganesha's NFSv3 for libnfs (in a
                                               #   namespace of its own), perf stat --profile
  shellcheck                                   # lint for these scripts
  litmus curl                                  # WebDAV: litmus suite, container e2e requests
  podman runc containernetworking-plugins      # the container image test (runc named: podman
  iptables debootstrap binutils dash           #   would pick crun, which fails on this host)
  cmake golang-go                              # efs-proxy --features fips (aws-lc-fips-sys)
  xz-utils gzip util-linux                     # build-guest.sh: vmlinux extraction, flock
  dpkg-dev                                     # packaging/build-deb.sh: dpkg-shlibdeps
  ${EXTRA_PKGS:-}
)

apt_env=(env DEBIAN_FRONTEND=noninteractive)
apt_opts=(-o DPkg::Lock::Timeout=600)
updated=0
apt_update() {
  log "apt-get update"
  # A third-party source that cannot be reached only warns; a broken Debian mirror shows up
  # later as "no candidate" / failed install, which is reported there.
  "${apt_env[@]}" apt-get "${apt_opts[@]}" update -qq || log "apt-get update reported errors (continuing)"
  updated=1
}
lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }
# no_candidate PKG...: print the packages that apt cannot install (no candidate version).
# One apt-cache call for all of them (it is slow to start).
no_candidate() {
  local out
  out=$(apt-cache policy "$@" 2>/dev/null) || true
  awk -v want="$*" '
    /^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
    /^  Candidate: / && $2 != "(none)" { ok[p] = 1 }
    END { n = split(want, w, " "); for (i = 1; i <= n; i++) if (!ok[w[i]]) print w[i] }' <<<"$out"
}

missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#pkgs[@]} packages already installed: ${pkgs[*]}"
  lists_present || apt_update   # build-guest.sh needs apt-cache
  if [ "$updated" = 1 ]; then log "done (ran apt-get update only)"; else log "nothing to do"; fi
  exit 0
fi

log "missing: ${missing[*]}"
if ! lists_present || [ -n "$(no_candidate "${missing[@]}")" ]; then
  apt_update
fi
bad=$(no_candidate "${missing[@]}")
if [ -n "$bad" ]; then
  die "no install candidate for: ${bad//$'\n'/ } (even after apt-get update); check /etc/apt/sources.list(.d): Debian 12 bookworm main is needed"
fi

install() {
  "${apt_env[@]}" apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"
}
t0=$(now)
if ! install; then
  if [ "$updated" = 1 ]; then die "apt-get install ${missing[*]} failed (see apt output above)"; fi
  log "install failed; package lists may be stale, updating and retrying once"
  apt_update
  install || die "apt-get install ${missing[*]} failed twice (see apt output above)"
fi
log "installed ${#missing[@]} package(s) in $(elapsed "$t0") s: ${missing[*]}"
