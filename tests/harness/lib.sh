# shellcheck shell=bash
# Shared helpers for the efs-proxy e2e harness (sourced, never executed).
#
#   . "$(dirname "$0")/lib.sh"
#
# Provides: log, die, need_root, need_cmd, port_listening, wait_port, await_listening,
# free_port, now, elapsed, e2e_workdir (with its cleanup), start_listener,
# and the defaults HARNESS_DIR and KVMNFS_WORK.

# Directory holding the harness scripts (absolute).
HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Shared, persistent cache for the guest kernel and the base initramfs (~0.6 GB).
# Per-run files never go here, except the "latest" serial log (see run-guest.sh).
: "${KVMNFS_WORK:=/var/tmp/efs-proxy-kvm}"
export KVMNFS_WORK

# Name of the running script, used as the log prefix.
PROG=${PROG:-$(basename "$0" .sh)}

# log MSG...: progress message on stderr (stdout stays free for data / the serial console).
log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }

# die MSG [EXIT_CODE]: print an error (what failed, what to check) and exit (default 1).
die() { printf '[%s] ERROR: %s\n' "$PROG" "$1" >&2; exit "${2:-1}"; }

need_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (ganesha's FSAL_VFS needs open_by_handle_at; apt needs root)" 2
}

# need_cmd CMD [PACKAGE]: fail with an install hint when CMD is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 ||
    die "'$1' not found (Debian package ${2:-$1}); run $HARNESS_DIR/install-deps.sh" 2
}

# port_listening PORT: true if some socket in this network namespace LISTENs on TCP PORT
# (any address).  Uses ss, so it opens no connection to the listener.
port_listening() {
  [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# wait_port PORT SECONDS: wait until PORT is listening; false on timeout.
wait_port() {
  local deadline=$((SECONDS + $2))
  until port_listening "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# await_listening VAR NAME PID: waits (at most 30 s) for the "listening on ADDR" line that
# PID, started with stdout to $TMP/NAME.out and stderr to $TMP/NAME.log, prints, and stores
# ADDR in VAR; dies if PID exits first.
await_listening() {
  local _var=$1 _name=$2 _pid=$3 _deadline=$((SECONDS + 30)) _addr=
  until [ -n "$_addr" ]; do
    kill -0 "$_pid" 2>/dev/null || die "$_name exited before listening; see $TMP/$_name.log"
    [ "$SECONDS" -lt "$_deadline" ] || die "$_name did not print 'listening on' within 30 s"
    sleep 0.05
    _addr=$(sed -n 's/^listening on //p' "$TMP/$_name.out")
  done
  printf -v "$_var" '%s' "$_addr"
}

# free_port: print a TCP port with no socket on it right now, below the kernel's ephemeral
# range (ip_local_port_range, 32768- by default).  Outgoing connections take their local
# ports from that range, and a listener cannot bind a port an established socket holds
# ("Address already in use"), so a port picked there can be taken between pick and bind;
# CI once failed that way.  Racy by nature still; the callers bind it within a second.
free_port() {
  local p i low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$low" -gt 21024 ] || die "ip_local_port_range starts at $low; free_port needs ports 20000-$((low - 1)) outside it"
  for i in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM + i) % (low - 20000)))
    [ -n "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || { echo "$p"; return 0; }
  done
  die "no free TCP port found in 20000-$((low - 1))"
}

# now: wall-clock seconds with microseconds (bash 5 EPOCHREALTIME, no forks).
now() { echo "${EPOCHREALTIME/,/.}"; }

# elapsed T0 [T1]: seconds between two `now` values, printed as %.1f.
elapsed() {
  local t1=${2:-$(now)}
  awk -v a="$1" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}

# e2e_workdir NAME: an end-to-end test's working directory and its cleanup, the same for
# every e2e script. Makes $TMP (NAME.XXXXXX under $TMPDIR), empties $pids, $guest_pid and
# $last_pid, and traps EXIT. The cleanup stops the guest first ($guest_pid: its NFS client
# must not outlive its server), then every process in $pids (TERM, then reaped), then runs
# the script's own `e2e_teardown` if it defines one (ganesha, network namespaces). On
# failure it prints the last $E2E_TAIL (30) lines of each $TMP/*.log and *.out and keeps
# $TMP; on success it removes $TMP.
e2e_workdir() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  pids=()
  guest_pid='' last_pid=''
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # called through the trap
e2e_cleanup() {
  local rc=$? pid f lines=${E2E_TAIL:-30}
  if [ -n "${guest_pid:-}" ]; then
    kill -TERM "$guest_pid" 2>/dev/null || true
    wait "$guest_pid" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if declare -F e2e_teardown >/dev/null; then e2e_teardown || true; fi
  if [ "$rc" -ne 0 ]; then
    log "FAILED; logs kept in $TMP:"
    for f in "$TMP"/*.log "$TMP"/*.out; do
      [ -f "$f" ] && { printf -- '--- %s (last %s lines)\n' "$f" "$lines" >&2; tail -n "$lines" "$f" >&2; }
    done
  else
    rm -rf "$TMP"
  fi
  return "$rc"
}

# start_listener VAR NAME CMD...: runs CMD in the background (stdout $TMP/NAME.out, stderr
# $TMP/NAME.log), adds its pid to $pids (and sets $last_pid), waits for its "listening on
# ADDR" line and stores ADDR in VAR. (Not through $(...): the pid must reach this shell's
# cleanup list. `ip netns exec NS CMD` as CMD works: it execs CMD, so the pid is CMD's.)
start_listener() {
  local var=$1 name=$2
  shift 2
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" </dev/null &
  last_pid=$!
  pids+=("$last_pid")
  await_listening "$var" "$name" "$last_pid"
}
