#!/usr/bin/env bash
# The container's payload end to end, without Docker (no engine on these machines): a QEMU
# guest (Linux 6.1) runs the real container/entrypoint.sh with the release efs-proxy and
# efs-webdav, exactly as the image's ENTRYPOINT does, except that EFS_PROXY_ARGS points the
# proxy at the test mount target instead of IAM + an NLB:
#
#   host: litmus / curl ── 127.0.0.1:H ──(QEMU hostfwd)──▶ guest :8080 efs-webdav
#   guest: efs-webdav ─▶ /mnt/s3files (NFSv4.2, mounted by entrypoint.sh) ─▶ efs-proxy :20049
#     ─TLS, client certificate, bind─▶ 10.0.2.2:T = host fake-mount-target ─▶ host nfs-ganesha
#
# From the host: litmus basic and copymove against the guest's WebDAV; a 16 MiB upload the
# way Finder sends it (chunked, X-Expected-Entity-Length) read back over WebDAV and found
# with the same sha256 in ganesha's export directory; Finder's ._* and .DS_Store files
# answered by WebDAV but absent from the export. The guest first checks a failing start
# (unreachable target: the entrypoint names the layer and the fix, exits 1, leaves nothing
# behind), and at the end the file through its mount, the health command and a clean SIGTERM
# (tests/e2e/container-guest-test.sh).
#
#   tests/e2e/container-guest.sh     (root; tests/harness/install-deps.sh once; release build:
#                                     cargo build --release -p efs-proxy -p efs-webdav -p efs-proxy-tests)
#
# env: BIN_DIR (default ${CARGO_TARGET_DIR:-target}/release) holds efs-proxy, efs-webdav and
#      fake-mount-target; KVMNFS_TIMEOUT (default 900); anything run-guest.sh reads.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=container-e2e
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_root
need_cmd ganesha.nfsd nfs-ganesha
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd litmus litmus
need_cmd curl curl

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
for bin in efs-proxy efs-webdav fake-mount-target; do
  [ -x "$BIN_DIR/$bin" ] ||
    die "$BIN_DIR/$bin not found: run 'cargo build --release -p efs-proxy -p efs-webdav -p efs-proxy-tests' first (or set BIN_DIR)" 2
done
SERVER_NAME=fs-0123456789abcdef0.s3files.us-east-1.on.aws
FILE=e2e-webdav-16m.bin

t0=$(now)
E2E_TAIL=40
e2e_workdir efs-container-e2e
GDIR=$TMP/ganesha
# shellcheck disable=SC2317  # called by e2e_cleanup
e2e_teardown() { "$HARNESS_DIR/ganesha.sh" stop "$GDIR" 2>/dev/null; }
step() { printf '\n== %s (%s s)\n' "$*" "$(elapsed "$t0")"; }

step "nfs server: nfs-ganesha (NFSv4.2, FSAL_VFS)"
gport=$(free_port)
"$HARNESS_DIR/ganesha.sh" start "$GDIR" "$gport" VFS >/dev/null
echo "ganesha on 127.0.0.1:$gport, export $GDIR/export"

step "mount target: fake-mount-target (TLS, client certificate required, bind READY)"
target=  # set by start_listener
start_listener target target "$BIN_DIR/fake-mount-target" --listen 127.0.0.1:0 \
  --pki-dir "$TMP/pki" --server-name "$SERVER_NAME" --bind ready --backend "127.0.0.1:$gport"
tport=${target##*:}
echo "mount target on $target; the guest dials 10.0.2.2:$tport"

step "guest: Linux 6.1 in QEMU running container/entrypoint.sh (efs-proxy + NFSv4.2 mount + efs-webdav)"
# start_guest: boots the guest with WebDAV forwarded to a new host port ($hport, $url).
start_guest() {
  hport=$(free_port)
  url=http://127.0.0.1:$hport
  NFS_PORT=$tport EXPORT_DIR=$GDIR/export \
    KVMNFS_GUEST_TEST=$ROOT/tests/e2e/container-guest-test.sh \
    KVMNFS_HOSTFWD="hostfwd=tcp:127.0.0.1:$hport-:8080" \
    KVMNFS_APPEND="servername=$SERVER_NAME webdavport=$hport donetimeout=600" \
    KVMNFS_MEM=${KVMNFS_MEM:-1024M} KVMNFS_TIMEOUT=${KVMNFS_TIMEOUT:-900} \
    SERIAL_LOG=$TMP/serial-live.log \
    GUEST_EXTRA_FILES="$BIN_DIR/efs-proxy:/usr/local/bin/efs-proxy $BIN_DIR/efs-webdav:/usr/local/bin/efs-webdav $ROOT/container/entrypoint.sh:/usr/local/bin/entrypoint.sh $TMP/pki:/pki" \
    "$HARNESS_DIR/run-guest.sh" >"$TMP/guest.log" 2>&1 &
  guest_pid=$!
  echo "console: $TMP/guest.log; WebDAV forwarded to $url"
}

# Wait for WebDAV through the forward (slirp accepts at once and resets until the guest
# listens, so poll with real requests). A forward port taken meanwhile: boot again.
for attempt in 1 2 3; do
  start_guest
  deadline=$((SECONDS + 300))
  until [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X OPTIONS "$url/" 2>/dev/null)" = 200 ]; do
    if ! kill -0 "$guest_pid" 2>/dev/null; then
      wait "$guest_pid" || true
      guest_pid=''
      if grep -q 'Could not set up host forwarding rule' "$TMP/guest.log" && [ "$attempt" -lt 3 ]; then
        log "host port $hport was taken before QEMU bound it; booting again with another"
        continue 2
      fi
      tail -n 30 "$TMP/guest.log" >&2
      die "the guest stopped before WebDAV answered"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "WebDAV did not answer on $url within 300 s (see $TMP/guest.log)"
    sleep 1
  done
  break
done
grep -E 'entrypoint: (mount|mounted|WebDAV|efs-proxy listening)' "$TMP/guest.log" | sed 's/^/  /' || true
echo "WebDAV answers on $url ($(elapsed "$t0") s)"

step "litmus basic + copymove against the guest's WebDAV"
(cd "$TMP" && TESTS="basic copymove" timeout 600 litmus "$url/" >"$TMP/litmus.log" 2>&1) || true
grep -E '^<- summary' "$TMP/litmus.log" || true
for suite in basic copymove; do
  grep -qE "^<- summary for \`$suite': of [0-9]+ tests run: [0-9]+ passed, 0 failed\. 100\.0%" "$TMP/litmus.log" ||
    die "litmus $suite did not pass 100% through the guest (see $TMP/litmus.log)"
done

step "16 MiB upload the way Finder sends it, and Finder's metadata files"
head -c $((16 << 20)) /dev/urandom >"$TMP/$FILE"
want=$(sha256sum "$TMP/$FILE" | cut -d' ' -f1)
code=$(curl -s -m 600 -o /dev/null -w '%{http_code}' -T "$TMP/$FILE" \
  -H 'Transfer-Encoding: chunked' -H "X-Expected-Entity-Length: $((16 << 20))" "$url/$FILE")
[ "$code" = 201 ] || die "PUT $FILE answered $code (expected 201)"
got=$(curl -sf -m 300 "$url/$FILE" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || die "GET $FILE over WebDAV: sha256 $got, uploaded $want"
echo "PUT + GET $FILE over WebDAV: sha256 $want"
for junk in "._$FILE" .DS_Store; do
  code=$(curl -s -m 60 -o /dev/null -w '%{http_code}' -T - "$url/$junk" <<<"finder metadata for $junk")
  [ "$code" = 201 ] || die "PUT $junk answered $code (expected 201)"
  [ "$(curl -sf -m 300 "$url/$junk")" = "finder metadata for $junk" ] || die "GET $junk did not return what was PUT"
done
echo "PUT + GET ._$FILE and .DS_Store over WebDAV: answered from memory"

step "ganesha's export (the 'bucket') on the host"
deadline=$((SECONDS + 30))
until [ -f "$GDIR/export/$FILE" ] && [ "$(sha256sum "$GDIR/export/$FILE" | cut -d' ' -f1)" = "$want" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "$GDIR/export/$FILE missing or different after 30 s"
  sleep 1
done
echo "$GDIR/export/$FILE has the same sha256 ($want)"
for junk in "._$FILE" .DS_Store; do
  [ ! -e "$GDIR/export/$junk" ] || die "$junk reached ganesha's export: Finder metadata would become S3 objects"
done
echo "no ._$FILE and no .DS_Store in the export: $(find "$GDIR/export" -mindepth 1 -maxdepth 1 -printf '%f ')"

step "tell the guest to finish: PUT e2e-host-done; it checks the file, health and SIGTERM"
code=$(curl -s -m 60 -o /dev/null -w '%{http_code}' -T - "$url/e2e-host-done" <<<"$FILE $want")
[ "$code" = 201 ] || die "PUT e2e-host-done answered $code"
rc=0
wait "$guest_pid" || rc=$?
guest_pid=''
grep -E 'KVMNFS|run-guest' "$TMP/guest.log" | grep -v 'KVMNFS: ' || true
[ "$rc" = 0 ] || die "the guest side failed (run-guest.sh exit $rc; console $TMP/guest.log)" "$rc"

step "what the entrypoint said in the guest"
grep -E 'entrypoint: |fail-case: |KVMNFS: (failing start|container ready|SIGTERM|stopped)' "$TMP/guest.log" | sed 's/^/  /' || true

step "what the mount target saw"
grep -q 'client_cert_bytes=[1-9]' "$TMP/target.log" || die "mount target saw no client certificate"
grep -q 'bind_client_to_partition received' "$TMP/target.log" || die "mount target saw no bind"
echo "mount target: $(grep -c 'client_cert_bytes=[1-9]' "$TMP/target.log") TLS handshakes with a client certificate, $(grep -c 'bind_client_to_partition received' "$TMP/target.log") binds"
grep -o 'KVMNFS-TIMING.*' "$TMP/guest.log" || true
log "PASS in $(elapsed "$t0") s"
