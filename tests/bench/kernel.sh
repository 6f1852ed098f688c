#!/usr/bin/env bash
# The kernel-client benchmark of issue 17: the Linux 6.1 kernel NFSv4.2 client in a QEMU
# guest (TCG, slirp: guest 10.0.2.2 = host 127.0.0.1) against nfs-ganesha through each
# forwarder, all in ONE guest boot:
#
#   direct    the guest mounts the plaintext fake mount target, which relays to ganesha
#   socat     -b131072, nodelay both sides (its best settings) -> the plaintext fake mount target
#   stunnel   stunnel4 client mode, TCP_NODELAY both sides, verifies the certificate and server
#             name, client certificate -> the TLS fake mount target
#   efs-proxy `efs-proxy run` (release build; TLS, client certificate, bind) -> the TLS fake
#             mount target
#
# Behind the forwarders the fake mount target relays to ganesha (TLS for stunnel and efs-proxy,
# plaintext for socat and direct), so every path has the same relay hop.
# Per round (order rotated from round to round), per forwarder, the guest
# (tests/bench/kernel-guest.sh) mounts with rsize=wsize=1 MiB, writes MIB MiB with
# dd conv=fsync, unmounts, drops its caches, remounts, reads the file back, checks its sha256.
#
#   tests/bench/kernel.sh                    3 rounds of 64 MiB each way (about 1 minute + the build)
#   tests/bench/kernel.sh --rounds 1 --mib 16   a quick check of the harness (about 15 s)
#   options: --rounds N (3), --mib N (64), --out FILE (target/bench/kernel.json)
#
# Prints a table: per forwarder the median WRITE and READ MiB/s over the rounds, the medians
# of the per-round ratios to direct, and the forwarder's CPU seconds per GiB moved (utime +
# stime from /proc/PID/stat, reaped children included, plus live children: socat forks one per
# connection) over the whole run; then efs-proxy / stunnel and efs-proxy / socat (medians of
# per-round ratios). Writes the per-round figures and the summary as JSON to --out.
# The guest is emulated (TCG) and shares the machine's cores with everything else: its
# absolute MiB/s are bounded by emulation; read the ratios.
# Needs root, qemu-system-x86, nfs-ganesha, socat and stunnel4 (tests/harness/install-deps.sh)
# and the guest kernel cache of tests/harness/build-guest.sh (built on first use).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=kernel-bench  # log prefix used by lib.sh
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"

ROUNDS=3 MIB=64 OUT=
while [ $# -gt 0 ]; do
  case $1 in
  --rounds) ROUNDS=${2:-}; shift 2 ;;
  --rounds=*) ROUNDS=${1#*=}; shift ;;
  --mib) MIB=${2:-}; shift 2 ;;
  --mib=*) MIB=${1#*=}; shift ;;
  --out) OUT=${2:-}; shift 2 ;;
  --out=*) OUT=${1#*=}; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option '$1' (--rounds N, --mib N, --out FILE)" 2 ;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer (got '$ROUNDS')" 2
[[ $MIB =~ ^[1-9][0-9]*$ ]] || die "--mib must be a positive integer (got '$MIB')" 2

need_root
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd ganesha.nfsd nfs-ganesha
need_cmd socat
need_cmd stunnel4
need_cmd awk gawk

cd "$ROOT"
cargo build --release --locked -p efs-proxy -p efs-proxy-tests --bins
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
OUT=${OUT:-${CARGO_TARGET_DIR:-$ROOT/target}/bench/kernel.json}
SERVER_NAME=fs-0123456789abcdef0.s3files.us-east-1.on.aws
FWDS=(direct socat stunnel efs-proxy)

t0=$(now)
e2e_workdir efs-kernel-bench
GDIR=$TMP/ganesha
target='' plain='' proxy=''  # set by start_listener
# shellcheck disable=SC2317  # called by e2e_cleanup
e2e_teardown() { "$HARNESS_DIR/ganesha.sh" stop "$GDIR" 2>/dev/null; }

gport=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR" "$gport" VFS >/dev/null
log "ganesha on 127.0.0.1:$gport (FSAL_VFS, export $GDIR/export)"

start_listener target target "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki" --server-name "$SERVER_NAME" --backend "127.0.0.1:$gport"
start_listener plain target-plain "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki-plain" --plaintext --backend "127.0.0.1:$gport"
log "fake mount targets: TLS on $target, plaintext on $plain, both relaying to ganesha"

declare -A port pid path
port[direct]=${plain##*:}
path[direct]="plaintext fake mount target"

# socat: its best settings (128 KiB buffers, nodelay both sides), to the plaintext target
port[socat]=$(free_port)
socat -b131072 "TCP-LISTEN:${port[socat]},bind=127.0.0.1,fork,reuseaddr,nodelay" \
  "TCP:$plain,nodelay" >"$TMP/socat.out" 2>"$TMP/socat.log" </dev/null &
pid[socat]=$!
pids+=("${pid[socat]}")
wait_port "${port[socat]}" 10 || die "socat did not listen on 127.0.0.1:${port[socat]}"
path[socat]="socat -> plaintext fake mount target"

# stunnel4: client mode, TCP_NODELAY both sides, verifies the target's certificate and name
port[stunnel]=$(free_port)
cat >"$TMP/stunnel.conf" <<CONF
foreground = yes
pid =
syslog = no
debug = 0
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[efs]
client = yes
accept = 127.0.0.1:${port[stunnel]}
connect = $target
cert = $TMP/pki/client.pem
key = $TMP/pki/client.key
CAfile = $TMP/pki/ca.pem
verifyChain = yes
checkHost = $SERVER_NAME
sni = $SERVER_NAME
CONF
stunnel4 "$TMP/stunnel.conf" >"$TMP/stunnel.out" 2>"$TMP/stunnel.log" </dev/null &
pid[stunnel]=$!
pids+=("${pid[stunnel]}")
wait_port "${port[stunnel]}" 10 || die "stunnel4 did not listen on 127.0.0.1:${port[stunnel]}"
path[stunnel]="stunnel4 (TLS) -> TLS fake mount target"

start_listener proxy proxy "$BIN_DIR/efs-proxy" run --listen 127.0.0.1:0 \
  --target "$target" --server-name "$SERVER_NAME" --ca-file "$TMP/pki/ca.pem" \
  --cert "$TMP/pki/client.pem" --key "$TMP/pki/client.key" --log-level warn
port[efs-proxy]=${proxy##*:}
pid[efs-proxy]=$last_pid
path[efs-proxy]="efs-proxy (TLS, bind) -> TLS fake mount target"

# stat_ticks PID: utime+stime+cutime+cstime of PID in clock ticks (USER_HZ, 100), as
# tests/src/bench.rs cpu_time reads them (fields after the command name's closing parenthesis)
stat_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_ticks PID: stat_ticks of PID plus those of its live children (socat's forks)
cpu_ticks() {
  local p=$1 total=0 c kids=''
  total=$(stat_ticks "$p")
  kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
  for c in $kids; do total=$((total + $(stat_ticks "$c"))); done
  echo "$total"
}
declare -A cpu0
for f in socat stunnel efs-proxy; do cpu0[$f]=$(cpu_ticks "${pid[$f]}"); done

kbfwd=
for f in "${FWDS[@]}"; do kbfwd+="${kbfwd:+,}$f:${port[$f]}"; done
log "guest: $ROUNDS rounds x ${#FWDS[@]} forwarders, $MIB MiB each way ($kbfwd)"
rc=0
t_guest=$(now)
NFS_PORT=${port[direct]} KVMNFS_GUEST_TEST=$ROOT/tests/bench/kernel-guest.sh \
  KVMNFS_APPEND="kbfwd=$kbfwd kbrounds=$ROUNDS kbmib=$MIB" \
  KVMNFS_MEM=${KVMNFS_MEM:-$((512 + 3 * MIB))M} \
  KVMNFS_TIMEOUT=${KVMNFS_TIMEOUT:-$((300 + ROUNDS * ${#FWDS[@]} * MIB * 2))} \
  SERIAL_LOG=$TMP/serial-live.log \
  "$HARNESS_DIR/run-guest.sh" >"$TMP/guest.log" 2>&1 || rc=$?
guest_s=$(elapsed "$t_guest")
grep -E 'KVMBENCH|KVMNFS-(PASS|FAIL|TIMING)' "$TMP/guest.log" | sed 's/^\[host *[0-9.]*\] //' >&2 || true
[ "$rc" = 0 ] || die "the guest run failed (run-guest.sh exit $rc); see $TMP/guest.log" "$rc"

# The guest has exited, so every connection is closed; give socat a moment to reap its forks.
sleep 1
declare -A cpu
for f in socat stunnel efs-proxy; do cpu[$f]=$(($(cpu_ticks "${pid[$f]}") - ${cpu0[$f]})); done

# ---- figures: medians over rounds, ratios as medians of per-round ratios ----
grep -o 'KVMBENCH .*' "$TMP/guest.log" | tr -d '\r' >"$TMP/results.txt"
n=$(wc -l <"$TMP/results.txt")
[ "$n" -eq $((ROUNDS * ${#FWDS[@]})) ] ||
  die "expected $((ROUNDS * ${#FWDS[@]})) KVMBENCH lines from the guest, got $n; see $TMP/guest.log"
mkdir -p "$(dirname "$OUT")"
awk -v mib="$MIB" -v rounds="$ROUNDS" -v order="${FWDS[*]}" -v out="$OUT" \
  -v p_direct="${path[direct]}" -v p_socat="${path[socat]}" -v p_stunnel="${path[stunnel]}" \
  -v p_efs="${path[efs-proxy]}" -v guest_s="$guest_s" \
  -v cpu_socat="${cpu[socat]}" -v cpu_stunnel="${cpu[stunnel]}" -v cpu_efs="${cpu[efs-proxy]}" '
  function median(list,   a, k, m, i, j, t) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    m = int((k + 1) / 2)
    return (k % 2) ? a[m] : (a[m] + a[m + 1]) / 2
  }
  function rate(s) { return mib / (s > 0.01 ? s : 0.01) }
  function jlist(list,   a, k, i, o) {
    k = split(list, a, " "); o = ""
    for (i = 1; i <= k; i++) o = o (i > 1 ? ", " : "") sprintf("%.2f", a[i])
    return "[" o "]"
  }
  { W[$2, $3] = rate($4); R[$2, $3] = rate($5); S[$2, $3] = $4 ", " $5 }
  END {
    nf = split(order, F, " ")
    path["direct"] = p_direct; path["socat"] = p_socat; path["stunnel"] = p_stunnel; path["efs-proxy"] = p_efs
    cpu["socat"] = cpu_socat; cpu["stunnel"] = cpu_stunnel; cpu["efs-proxy"] = cpu_efs
    gib = rounds * mib * 2 / 1024
    for (i = 1; i <= nf; i++) {
      f = F[i]; wl = rl = dw = dr = ""
      for (r = 1; r <= rounds; r++) {
        wl = wl " " W[f, r]; rl = rl " " R[f, r]
        dw = dw " " W[f, r] / W["direct", r]; dr = dr " " R[f, r] / R["direct", r]
      }
      WL[f] = wl; RL[f] = rl
      MW[f] = median(wl); MR[f] = median(rl); DW[f] = median(dw); DR[f] = median(dr)
      CPU[f] = (f in cpu) ? sprintf("%.2f", cpu[f] / 100 / gib) : "-"
    }
    printf "\nKernel NFSv4.2 client in QEMU (TCG), %d round(s) of %d MiB each way, medians\n\n", rounds, mib
    printf "| forwarder | path | WRITE MiB/s | READ MiB/s | WRITE / direct | READ / direct | CPU s/GiB |\n"
    printf "|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= nf; i++) {
      f = F[i]
      printf "| %s | %s | %.1f | %.1f | %.2fx | %.2fx | %s |\n", f, path[f], MW[f], MR[f], DW[f], DR[f], CPU[f]
    }
    np = split("stunnel socat", B, " ")
    printf "\n| efs-proxy vs | WRITE | READ |\n|---|---|---|\n"
    for (b = 1; b <= np; b++) {
      rw = rr = ""
      for (r = 1; r <= rounds; r++) {
        rw = rw " " W["efs-proxy", r] / W[B[b], r]; rr = rr " " R["efs-proxy", r] / R[B[b], r]
      }
      VW[B[b]] = median(rw); VR[B[b]] = median(rr)
      printf "| %s | %.2fx | %.2fx |\n", B[b], VW[B[b]], VR[B[b]]
    }
    printf "\nCPU s/GiB: the forwarder process (children included) over the whole run, %.3f GiB moved\n", gib
    # JSON
    printf "{\n  \"client\": \"linux kernel NFSv4.2 in QEMU (TCG), mount -o nfsvers=4.2,rsize=1048576,wsize=1048576,hard,timeo=600\",\n" > out
    printf "  \"rounds\": %d,\n  \"mib\": %d,\n  \"guest_seconds\": %s,\n  \"forwarders\": {\n", rounds, mib, guest_s > out
    for (i = 1; i <= nf; i++) {
      f = F[i]; sl = ""
      for (r = 1; r <= rounds; r++) sl = sl (r > 1 ? ", " : "") "[" S[f, r] "]"
      printf "    \"%s\": {\"path\": \"%s\", \"write_mib_s\": %s, \"read_mib_s\": %s, \"seconds_write_read\": [%s], ", f, path[f], jlist(WL[f]), jlist(RL[f]), sl > out
      printf "\"write_median\": %.2f, \"read_median\": %.2f, \"write_vs_direct\": %.3f, \"read_vs_direct\": %.3f, \"cpu_s_per_gib\": %s}%s\n", MW[f], MR[f], DW[f], DR[f], (CPU[f] == "-" ? "null" : CPU[f]), (i < nf ? "," : "") > out
    }
    printf "  },\n  \"efs_proxy_vs\": {\"stunnel\": {\"write\": %.3f, \"read\": %.3f}, \"socat\": {\"write\": %.3f, \"read\": %.3f}}\n}\n", VW["stunnel"], VR["stunnel"], VW["socat"], VR["socat"] > out
  }' "$TMP/results.txt"
echo
log "guest run ${guest_s} s, whole run $(elapsed "$t0") s; JSON in $OUT"
