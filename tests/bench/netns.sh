#!/usr/bin/env bash
# Runs efs-bench with an NFSv3+v4 nfs-ganesha for its libnfs pattern. Called by run.sh as
#
#   unshare --net --mount tests/bench/netns.sh EFS_BENCH [efs-bench options]
#
# inside a fresh network namespace (loopback only: every byte of the benchmark stays in it)
# and mount namespace (a private /run, so its rpcbind socket is not the host's). libnfs-utils
# 4.0 fails to encode NFSv4 WRITEs ("ZDR error: Failed to encode COMPOUND4args"), so libnfs
# speaks NFSv3, and ganesha 4.3 exits at start-up when it cannot register NFSv3 with rpcbind:
# hence this namespace's own rpcbind. ganesha exports a tmpfs directory (FSAL_VFS), so the
# disk is not what is measured.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: unshare --net --mount $0 EFS_BENCH [options]" >&2; exit 2; }
bench=$1
shift
mount -t tmpfs tmpfs /run
ip link set lo up
# ganesha resolves its host name; with only 127.0.0.1 on lo that fails (tests/harness/ganesha.sh).
ip addr add 192.0.2.1/32 dev lo
dir=$(mktemp -d /dev/shm/efs-bench-nfs.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p /run/rpcbind "$dir/export" "$dir/recov"
rpcbind -f &
pids+=($!)
nfs_port=2049 mount_port=20048
cat > "$dir/ganesha.conf" <<CONF
NFS_CORE_PARAM {
    Protocols = 3, 4;
    NFS_Port = $nfs_port;
    MNT_Port = $mount_port;
    Bind_addr = 127.0.0.1;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    Plugins_Dir = "/usr/lib/x86_64-linux-gnu/ganesha";
}
NFS_KRB5 { Active_krb5 = false; }
NFSv4 { Graceless = true; Only_Numeric_Owners = true; RecoveryBackend = fs; RecoveryRoot = "$dir/recov"; }
EXPORT {
    Export_Id = 1;
    Path = "$dir/export";
    Pseudo = "/export";
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 3, 4;
    Transports = TCP;
    SecType = sys;
    FSAL { Name = VFS; }
}
CONF
for _ in $(seq 50); do [ -S /run/rpcbind.sock ] && break; sleep 0.1; done
ganesha.nfsd -F -f "$dir/ganesha.conf" -L "$dir/ganesha.log" -p "$dir/ganesha.pid" -N NIV_EVENT \
  </dev/null >"$dir/ganesha.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if grep -q 'NFS SERVER INITIALIZED' "$dir/ganesha.log" 2>/dev/null &&
    (exec 3<>"/dev/tcp/127.0.0.1/$nfs_port") 2>/dev/null; then
    break
  fi
  kill -0 "${pids[1]}" 2>/dev/null || { tail -20 "$dir/ganesha.log" >&2; echo "bench: ganesha exited" >&2; exit 1; }
  sleep 0.1
done
"$bench" --nfs-server "127.0.0.1:$nfs_port" --nfs-mount-port "$mount_port" \
  --nfs-export "$dir/export" "$@"
