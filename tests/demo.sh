#!/usr/bin/env bash
# The proxy's main job, on one machine and without AWS: a real Linux NFSv4.2 client (a kernel
# in QEMU) mounts through efs-proxy, which opens TLS with a client certificate to a test mount
# target, binds with bind_client_to_partition, and forwards NFS to nfs-ganesha. Prints what
# each layer did.
#
#   bash tests/demo.sh    (as root)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "== installing what the demo needs (nfs-ganesha, qemu-system-x86, ...; skipped when present)"
bash tests/harness/install-deps.sh
echo "== building efs-proxy and the test mount target"
cargo build --workspace --bins --locked
bash tests/e2e/kernel-client.sh
