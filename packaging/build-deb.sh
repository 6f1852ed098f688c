#!/usr/bin/env bash
# Builds the Debian package of efs-proxy (amd64) with cargo-deb:
#
#   bash packaging/build-deb.sh        -> prints the path of efs-proxy_<version>-1_amd64.deb
#
# The release binary, its man pages and shell completions (`efs-proxy generate-assets`, from
# the same clap definitions as --help), README and docs. What goes where and why:
# docs/packaging.md. Installs cargo-deb (cargo install --locked) when it is missing, and
# needs dpkg-dev for the shared-library dependencies (tests/harness/install-deps.sh).
# Respects CARGO_TARGET_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CARGO_DEB_VERSION=3.8.0
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if ! cargo deb --version 2>/dev/null | grep -F "$CARGO_DEB_VERSION" >/dev/null; then
  echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb >&2
fi
command -v dpkg-shlibdeps >/dev/null ||
  { echo "build-deb: dpkg-shlibdeps not found: apt-get install dpkg-dev" >&2; exit 2; }

cargo build --release --locked -p efs-proxy >&2
# cargo-deb maps asset paths under target/release/ to this target directory.
rm -rf "$TARGET_DIR/release/assets"
"$TARGET_DIR/release/efs-proxy" generate-assets --out "$TARGET_DIR/release/assets" >/dev/null
# Debian installs man pages compressed (policy 12.1); -n keeps the package reproducible.
gzip -9n "$TARGET_DIR"/release/assets/man/*.1
# cargo deb prints the package's path on stdout; its progress goes to stderr.
# --strip: the release profile keeps line tables for backtraces; the package does not need them.
deb=$(cargo deb --locked -p efs-proxy --no-build --strip --output "$TARGET_DIR/debian/")
[ -f "$deb" ] || { echo "build-deb: cargo deb wrote no package (it said: $deb)" >&2; exit 1; }
echo "$deb"
