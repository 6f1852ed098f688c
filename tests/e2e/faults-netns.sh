#!/usr/bin/env bash
# Connection resilience of efs-proxy under network faults, in two network namespaces joined by
# a veth pair (nothing leaves the namespaces this script creates):
#
#   namespace A (client side, lo up)              namespace B (server side)
#     rpc-ping ─► efs-proxy on 127.0.0.1 ── veth 10.99.0.1/30 ── 10.99.0.2/30 ──► fake-mount-target
#                 (TLS, client cert, bind)                                       (echo backend)
#
# rpc-ping (tests/src/bin/rpc-ping.rs) makes one small echo call every 100 ms, reconnects when
# its connection closes, and prints one line per event. Scenarios, each with a bound:
#   a. blackhole: nftables in B drops the mount target's port both ways. With
#      --server-timeout 3 the proxy must close the client connection 3 s (+ SLACK) after the
#      unanswered call, and log "server did not answer outstanding calls"; once the drop is
#      removed the client reconnects and its calls succeed again.
#   b. link down 2 s, then up (proxy with --server-timeout 10): the connection survives (no
#      close) and calls resume once the link is back.
#   c. connection reset: `ss -K` kills the mount target's sockets in B. The client connection
#      must be closed at once (under 1 s); the client reconnects and carries on.
#
#   tests/e2e/faults-netns.sh      (root; needs nftables and iproute2, see install-deps.sh;
#                                   binaries from `cargo build --workspace --bins`)
#
# env: BIN_DIR (default: $CARGO_TARGET_DIR or ./target, /debug; E2E_PROFILE=release picks
#      target/release) holds efs-proxy, fake-mount-target and rpc-ping; SLACK (default 1.5 s)
#      is the allowance over the server timeout in scenario a.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=faults-netns  # log prefix used by lib.sh
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_root
need_cmd ip iproute2
need_cmd ss iproute2
need_cmd nft nftables

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/${E2E_PROFILE:-debug}}
for bin in efs-proxy fake-mount-target rpc-ping; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin not found: run 'cargo build --workspace --bins' first" 2
done
SERVER_NAME=fs-0123456789abcdef0.s3files.us-east-1.on.aws
SLACK=${SLACK:-1.5}
NSA=efs-faults-a-$$ NSB=efs-faults-b-$$
ADDR_A=10.99.0.1 ADDR_B=10.99.0.2

t0=$(now)
e2e_workdir efs-faults
target='' proxy3='' proxy10='' ping_pid=''  # set below
# shellcheck disable=SC2317  # called by e2e_cleanup
e2e_teardown() {
  [ -z "$ping_pid" ] || kill -TERM "$ping_pid" 2>/dev/null || true
  ip netns del "$NSA" 2>/dev/null || true
  ip netns del "$NSB" 2>/dev/null || true
  rm -rf "/etc/netns/$NSA"
}

step() { printf '\n== %s\n' "$*"; }
# fcheck EXPR: true if the awk expression holds (floating point).
fcheck() { awk "BEGIN { exit !($1) }"; }
# field LINE KEY: the value of KEY=VALUE in an rpc-ping line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
# sub T1 T0: T1 - T0 with millisecond precision.
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# start_ping NAME ADDR: rpc-ping in namespace A against ADDR (output NAME.out); returns after its
# first reply.
start_ping() {
  ip netns exec "$NSA" "$BIN_DIR/rpc-ping" --addr "$2" --interval-ms 100 >"$TMP/$1.out" 2>"$TMP/$1.log" </dev/null &
  ping_pid=$!
  wait_line "$1" '^FIRST_REPLY .* n=1 ' 0 10 || die "rpc-ping got no first reply through $2"
}
# stop_ping NAME: SIGTERM; its SUMMARY line goes to $summary (and stdout).
summary=''
stop_ping() {
  kill -TERM "$ping_pid"
  wait "$ping_pid" || die "rpc-ping exited with an error; see $TMP/$1.log"
  ping_pid=''
  summary=$(grep '^SUMMARY ' "$TMP/$1.out") || die "rpc-ping printed no SUMMARY"
  echo "$summary"
}
# wait_line NAME REGEX AFTER SECONDS: wait for a line of NAME.out matching REGEX whose at= is
# not before AFTER (Unix time; 0: any); print it. False after SECONDS.
wait_line() {
  local deadline=$((SECONDS + $4)) line
  while :; do
    line=$(grep -E "$2" "$TMP/$1.out" | awk -v after="$3" '{
        for (i = 1; i <= NF; i++) if ($i ~ /^at=/) at = substr($i, 4)
        if (at + 0 >= after + 0) { print; exit } }')
    [ -z "$line" ] || { printf '%s\n' "$line"; return 0; }
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

results=()
result() { results+=("$*"); echo "RESULT $*"; }

step "namespaces $NSA (client) and $NSB (server), veth $ADDR_A/30 <-> $ADDR_B/30"
ip netns add "$NSA"
ip netns add "$NSB"
ip link add veth-a netns "$NSA" type veth peer name veth-b netns "$NSB"
ip -n "$NSA" addr add "$ADDR_A/30" dev veth-a
ip -n "$NSB" addr add "$ADDR_B/30" dev veth-b
for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
ip -n "$NSA" link set veth-a up
ip -n "$NSB" link set veth-b up

step "mount target in $NSB (TLS, client certificate, bind READY, echo backend)"
start_listener target target ip netns exec "$NSB" "$BIN_DIR/fake-mount-target" --listen "$ADDR_B:0" \
  --pki-dir "$TMP/pki" --server-name "$SERVER_NAME" --bind ready --backend echo
tport=${target##*:}
echo "mount target on $target"

step "two proxies in $NSA: --server-timeout 3 and --server-timeout 10"
proxy_args=(run --listen 127.0.0.1:0 --target "$target" --server-name "$SERVER_NAME"
  --ca-file "$TMP/pki/ca.pem" --cert "$TMP/pki/client.pem" --key "$TMP/pki/client.key")
start_listener proxy3 proxy3 ip netns exec "$NSA" "$BIN_DIR/efs-proxy" "${proxy_args[@]}" --server-timeout 3
start_listener proxy10 proxy10 ip netns exec "$NSA" "$BIN_DIR/efs-proxy" "${proxy_args[@]}" --server-timeout 10
echo "proxy (timeout 3 s) on $proxy3, proxy (timeout 10 s) on $proxy10 (in $NSA)"

# ---------------------------------------------------------------------------------------------
step "a. blackhole: nft drops tcp port $tport both ways in $NSB (proxy --server-timeout 3)"
start_ping a "$proxy3"
sleep 1
t_drop=$(now)
ip netns exec "$NSB" nft -f - <<NFT
table inet efs_fault {
  chain in { type filter hook input priority 0; policy accept; tcp dport $tport drop; }
  chain out { type filter hook output priority 0; policy accept; tcp sport $tport drop; }
}
NFT
closed=$(wait_line a '^CLOSED ' "$t_drop" 10) ||
  die "a: the client connection was not closed within 10 s of the blackhole (server timeout 3 s)"
echo "$closed"
waited=$(field "$closed" waited)
since=$(field "$closed" since_last_reply)
detect=$(sub "$(field "$closed" at)" "$t_drop")
fcheck "$waited >= 2.9" || die "a: closed after the call waited only $waited s (< server timeout 3 s)"
fcheck "$since <= 3 + $SLACK" || die "a: closed $since s after the last reply (bound: 3 s + $SLACK s)"
grep -q 'server did not answer outstanding calls for 3s' "$TMP/proxy3.log" ||
  die "a: the proxy did not log 'server did not answer outstanding calls for 3s'"
sleep 1   # the client has reconnected; its call waits for the proxy's new server connection
t_undrop=$(now)
ip netns exec "$NSB" nft delete table inet efs_fault
resumed=$(wait_line a '^FIRST_REPLY ' "$t_undrop" 15) ||
  die "a: no reply within 15 s after the blackhole was removed"
echo "$resumed"
recover=$(sub "$(field "$resumed" at)" "$t_undrop")
stop_ping a
echo "proxy (timeout 3 s) log:"
grep -E 'forwarding|connection (closed|ended)|cannot reach' "$TMP/proxy3.log" | sed 's/^/  /'
[ "$(field "$summary" bad)" = 0 ] || die "a: wrong replies: $summary"
result "a blackhole: closed ${detect}s after the drop, ${since}s after the last reply (call waited ${waited}s; bound 3+${SLACK}s); first reply ${recover}s after the drop was removed; closes=$(field "$summary" closes) connects=$(field "$summary" connects) calls=$(field "$summary" calls)"

# ---------------------------------------------------------------------------------------------
step "b. link down 2 s, then up (proxy --server-timeout 10)"
start_ping b "$proxy10"
sleep 1
t_down=$(now)
ip -n "$NSB" link set veth-b down
sleep 2
ip -n "$NSB" link set veth-b up
t_up=$(now)
resumed=$(wait_line b '^RESUMED ' "$t_down" 15) || die "b: calls did not resume within 15 s of the link coming back"
echo "$resumed"
sleep 1
stop_ping b
[ "$(field "$summary" closes)" = 0 ] || die "b: the connection was closed during a 2 s link cut: $summary"
[ "$(field "$summary" bad)" = 0 ] || die "b: wrong replies: $summary"
fcheck "$(field "$summary" since_last_reply) < 1" || die "b: calls are not flowing at the end: $summary"
after_up=$(sub "$(field "$resumed" at)" "$t_up")
result "b link down 2s: no close; longest gap $(field "$summary" max_gap)s, calls resumed ${after_up}s after link up; closes=0 connects=$(field "$summary" connects) calls=$(field "$summary" calls)"

# ---------------------------------------------------------------------------------------------
step "c. connection reset: ss -K on the mount target's sockets in $NSB (proxy --server-timeout 10)"
start_ping c "$proxy10"
sleep 1
t_kill=$(now)
killed=$(ip netns exec "$NSB" ss -K -Htn state established "( sport = :$tport )")
[ -n "$killed" ] || die "c: ss -K found no established socket on port $tport in $NSB"
echo "killed: $(wc -l <<<"$killed") socket(s)"
closed=$(wait_line c '^CLOSED ' "$t_kill" 5) || die "c: the client connection was not closed within 5 s of the reset"
echo "$closed"
detect=$(sub "$(field "$closed" at)" "$t_kill")
fcheck "$detect < 1" || die "c: the client connection was closed $detect s after the reset (bound: 1 s)"
again=$(wait_line c '^FIRST_REPLY .* n=2 ' "$t_kill" 10) || die "c: no reply on a new connection within 10 s"
echo "$again"
recover=$(sub "$(field "$again" at)" "$t_kill")
sleep 1
stop_ping c
[ "$(field "$summary" closes)" = 1 ] || die "c: expected exactly one close: $summary"
[ "$(field "$summary" bad)" = 0 ] || die "c: wrong replies: $summary"
grep -qE 'connection closed: server side failed|connection ended: server closed' "$TMP/proxy10.log" ||
  die "c: the proxy did not log the server-side failure"
result "c reset (ss -K): client closed ${detect}s after the reset (bound 1s); first reply on the new connection ${recover}s after the reset; closes=1 connects=$(field "$summary" connects) calls=$(field "$summary" calls)"

# ---------------------------------------------------------------------------------------------
step "d. dual stack with a dead IPv6 path: mt.test has an IPv6 address whose SYNs are dropped"
# `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts. 2001:db8:99::/64 (documentation
# prefix) lives only on this veth pair; glibc sorts it before IPv4 (RFC 6724 precedence), as a
# resolver returns AAAA first on a dual-stack host. The mount target listens on IPv4 only, and
# nft drops IPv6 SYNs to its port: without staggered attempts the first connection would wait
# the whole --connect-timeout (10 s), as AWS's proxy does (efs-utils#271).
ip -n "$NSA" addr add 2001:db8:99::1/64 dev veth-a nodad
ip -n "$NSB" addr add 2001:db8:99::2/64 dev veth-b nodad
mkdir -p "/etc/netns/$NSA"
printf '2001:db8:99::2 mt.test\n%s mt.test\n' "$ADDR_B" >"/etc/netns/$NSA/hosts"
ip netns exec "$NSB" nft -f - <<NFT
table inet efs_v6 {
  chain in {
    type filter hook input priority 0; policy accept;
    ip6 daddr 2001:db8:99::2 tcp dport $tport drop
  }
}
NFT
order=$(ip netns exec "$NSA" getent ahosts mt.test | awk '$2 == "STREAM" { print $1 }' | paste -sd' ')
echo "mt.test resolves (in order) to: $order"
case $order in 2001:db8:99::2*) ;; *) die "d: the resolver does not list the IPv6 address first ($order)" ;; esac
proxy_v6=''
start_listener proxy_v6 proxy_v6 ip netns exec "$NSA" "$BIN_DIR/efs-proxy" run --listen 127.0.0.1:0 \
  --target "mt.test:$tport" --server-name "$SERVER_NAME" --ca-file "$TMP/pki/ca.pem" \
  --cert "$TMP/pki/client.pem" --key "$TMP/pki/client.key" --connect-timeout 10
t_start=$(now)
start_ping d "$proxy_v6"
first=$(wait_line d '^FIRST_REPLY .* n=1 ' 0 1)
echo "$first"
took=$(sub "$(field "$first" at)" "$t_start")
fcheck "$took < 1.5" || die "d: the first reply took ${took}s behind a dead IPv6 address (bound: 1.5 s)"
stop_ping d
rm -rf "/etc/netns/$NSA"
result "d dual stack, IPv6 blackholed: first reply after ${took}s (connect timeout 10 s; staggered attempts 250 ms apart)"

step "results"
printf '%s\n' "${results[@]}"
log "PASS in $(elapsed "$t0") s"
