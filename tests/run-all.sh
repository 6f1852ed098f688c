#!/usr/bin/env bash
# Runs every test of the project, in the order a failure is cheapest to find:
#   1. cargo test (unit, property and integration tests against the fake mount target), then
#      the drop-in tests again with --features fips (rustls on aws-lc-rs in FIPS mode)
#   2. infra: CDK assertions + cfn-lint (offline)
#   3. shellcheck on every script
#   4. container: hadolint, docker-mount.sh against a stub docker and against macOS / Docker
#      Desktop stand-ins; litmus (all five groups) against the WebDAV server; then (root) the
#      image: Debian's podman builds container/Dockerfile and runs it (mount failure
#      diagnosed, healthcheck, litmus and a Finder-like session on the published port); the
#      Debian package built with cargo-deb, installed, used and removed in a clean Debian 12
#   5. end to end with real peers: the Linux kernel NFSv4.2 client in QEMU → efs-proxy →
#      fake mount target → nfs-ganesha (native, IAM, drop-in, forced scale-up); the mount
#      helper itself in the guest (mount -t s3files, fstab); the
#      container's entrypoint on this host (one diagnosis per failure class); the entrypoint
#      in QEMU (release build) with litmus and a 16 MiB upload over WebDAV from the host
#   6. connection faults: efs-proxy between two network namespaces (nft blackhole, link
#      down/up, ss -K); the kernel client's 32 MiB writes through a proxy SIGKILL + restart
#      and a server-side reset
#
#   bash tests/run-all.sh    (as root: installs the Debian packages it needs, runs ganesha and QEMU)
#
# env: SKIP_E2E=1 skips steps 5 and 6 (for machines without root/QEMU); SKIP_INFRA=1 skips step 2;
#      SKIP_IMAGE=1 skips the image build and the package of step 4. The last line names whatever was skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
t0=$SECONDS
section() { printf '\n######## %s (t=%ss)\n' "$*" "$((SECONDS - t0))"; }
# What a SKIP_* variable left out, named in the last line instead of "all tests passed".
skipped=()
skip() { skipped+=("$1"); printf '\n######## SKIPPED: %s\n' "$1"; }

if [ "$(id -u)" = 0 ]; then
  section "system packages (idempotent)"
  bash tests/harness/install-deps.sh
fi

section "cargo build + test"
cargo build --workspace --bins --locked
cargo test --workspace --locked
section "FIPS build: rustls on aws-lc-rs in FIPS mode, drop-in tests (fips = yes)"
cargo test --locked -p efs-proxy --features fips --test dropin

if [ "${SKIP_INFRA:-0}" != 1 ]; then
  section "infra (CDK)"
  bash infra/test.sh
else
  skip "infra CDK tests (SKIP_INFRA=1)"
fi

section "shellcheck"
mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
shellcheck -x "${scripts[@]}"
# Under `set -o pipefail`, `producer | grep -q` fails at random: grep exits at the first match
# and the producer dies of SIGPIPE (141) if it still has output to write. Use `grep ... >/dev/null`.
if early=$(grep -nE '^[^#]*\| *grep +-[a-zA-Z]*q' "${scripts[@]}"); then
  echo "$early"
  echo "error: a pipe into grep -q in a pipefail script (fails when the producer gets SIGPIPE); use 'grep ... >/dev/null'" >&2
  exit 1
fi

section "container: static checks (hadolint, docker-mount.sh) and litmus against efs-webdav"
bash tests/e2e/container-static.sh
bash tests/e2e/macos-emulation.sh
bash tests/e2e/container-litmus.sh

if [ "${SKIP_IMAGE:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  section "container image: podman builds container/Dockerfile and runs it (mount failure, litmus, Finder, stop)"
  bash tests/e2e/container-image.sh
  section "the Debian package: built with cargo-deb, installed, used and removed in a clean Debian 12 (podman)"
  bash tests/e2e/deb-install.sh
else
  skip "container image build and run, the Debian package (SKIP_IMAGE=1 or not root)"
fi

if [ "${SKIP_E2E:-0}" != 1 ]; then
  section "end to end: kernel client → efs-proxy → mount target → ganesha"
  bash tests/e2e/kernel-client.sh
  section "end to end, IAM mode (the proxy's own certificate, verified by the mount target)"
  E2E_MODE=iam bash tests/e2e/kernel-client.sh
  section "end to end, drop-in mode (efs-utils config file)"
  E2E_MODE=dropin bash tests/e2e/kernel-client.sh
  section "end to end: the mount helper inside the QEMU guest (mount -t s3files, two at once, proxy killed mid-write, fstab + mount -a)"
  bash tests/e2e/mount-helper.sh
  section "end to end under forced scale-up: session-management COMPOUNDs stay on the first connection"
  E2E_MODE=scaleup bash tests/e2e/kernel-client.sh
  section "container entrypoint on this host: one diagnosis per failure class (IAM, real peers), argv injection refused"
  bash tests/e2e/container-entrypoint.sh
  section "end to end: container entrypoint in QEMU (efs-proxy + NFSv4.2 mount + WebDAV)"
  cargo build --release --locked -p efs-proxy -p efs-webdav -p efs-proxy-tests --bins
  bash tests/e2e/container-guest.sh
fi

if [ "${SKIP_E2E:-0}" != 1 ]; then
  section "connection faults: netns + veth (nft blackhole, link down/up, ss -K) through efs-proxy"
  bash tests/e2e/faults-netns.sh
  section "connection faults: kernel client writes through a proxy restart and a server-side reset"
  bash tests/e2e/kernel-faults.sh
else
  skip "end to end and connection faults (SKIP_E2E=1)"
fi

if [ ${#skipped[@]} -eq 0 ]; then
  section "all tests passed in $((SECONDS - t0)) s"
else
  section "tests passed in $((SECONDS - t0)) s, but NOT all ran; skipped: $(IFS=';'; echo "${skipped[*]}")"
fi
