#!/usr/bin/env bash
# The image, built and run by a real container engine: Debian's podman builds the real,
# unchanged container/Dockerfile (the same file Docker Desktop builds) from base images made
# locally from Debian packages (tests/harness/podman-base-images.sh; Docker Hub is not
# reachable here), then runs the image the way docker-compose.yml does (CAP_SYS_ADMIN,
# apparmor=unconfined, WebDAV published on a 127.0.0.1 port, the environment, ~/.aws
# read-only). What only a real engine shows: COPY paths, packages, the healthcheck, signals.
#
#   1. the image: size; apt-get check passes (dpkg consistent, derived images can install
#      packages); no Python; mount.nfs runs with all its libraries; the binaries carry no
#      debug info; the HEALTHCHECK, ENTRYPOINT and STOPSIGNAL survived the build.
#   2. a real start against this machine's kernel, which has no NFS client: efs-proxy reaches
#      the test mount target (fake-mount-target on the podman bridge's host address: TLS,
#      client certificate, bind), the mount fails with "No such device", and the entrypoint
#      exits 1 within seconds with the fix line about the kernel's NFSv4 client. The image's
#      HEALTHCHECK reports a container without the mount unhealthy.
#   3. TEST_SERVE_DIR (the entrypoint's test-only switch: WebDAV from a directory, no proxy,
#      no mount) with the password file docker-mount.sh hands over, efs-webdav confined to
#      that directory (chroot): litmus (all five groups, 100 %), a Finder session (WebDAVFS
#      User-Agent: OPTIONS, PROPFIND quota, LOCK, chunked PUT with X-Expected-Entity-Length,
#      UNLOCK, ._* and .DS_Store answered but not stored, GET back by sha256) on the
#      published port, the healthcheck healthy, and `podman stop` (SIGTERM through tini)
#      exits 0 well inside the 60 s grace period.
#
#   tests/e2e/container-image.sh     (root; Debian packages podman runc debootstrap litmus
#                                     curl binutils: tests/harness/install-deps.sh)
#
# Times: base images ~1.5 min when not cached; the image build ~25-35 min cold on 2 cores,
# 1-3 min with the cargo cache (kept, like podman's storage, under $CI_CACHE_DIR/podman).
# env: CI_CACHE_DIR (default /var/cache/efs-proxy-ci); IMAGE (default
#      localhost/efs-proxy-rs/s3files:local); BIN_DIR (fake-mount-target; default
#      ${CARGO_TARGET_DIR:-target}/debug, built if missing); KEEP=1 keeps containers and logs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=container-image
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
# shellcheck source=tests/harness/podman-env.sh
. "$ROOT/tests/harness/podman-env.sh"
need_root
need_cmd curl curl
need_cmd litmus litmus
need_cmd readelf binutils
podman_setup
IMAGE=${IMAGE:-localhost/efs-proxy-rs/s3files:local}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
SERVER_NAME=fs-0123456789abcdef0.s3files.us-east-1.on.aws
# What docker-compose.yml passes, with dummy but valid values.
COMPOSE_ENV=(-e NLB_DNS=efsproxy-nlb-0123456789.elb.us-east-1.amazonaws.com
  -e FS_ID=fs-0123456789abcdef0 -e AWS_REGION=us-east-1 -e EFS_SERVICE=s3files -e LOG_LEVEL=info)
COMPOSE_FLAGS=(--cap-add SYS_ADMIN --security-opt apparmor=unconfined)
CT_FAIL=efs-image-mountfail-$$
CT_HEALTH=efs-image-health-$$
CT_SERVE=efs-image-serve-$$

t0=$(now)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/efs-container-image.XXXXXX")
chmod 0755 "$TMP"
target_pid=''
declare -A T=()  # step -> seconds, for the summary
# shellcheck disable=SC2317  # called through the trap
cleanup() {
  local rc=$?
  set +e  # clean up everything, whatever fails
  [ -z "$target_pid" ] || { kill "$target_pid" 2>/dev/null; wait "$target_pid" 2>/dev/null; }
  if [ "$rc" -ne 0 ]; then
    for c in "$CT_FAIL" "$CT_SERVE"; do
      podman logs "$c" >"$TMP/$c.log" 2>&1 || true
    done
    log "FAILED; logs kept in $TMP"
  fi
  if [ "${KEEP:-0}" != 1 ]; then
    podman rm -f -i -t 0 "$CT_FAIL" "$CT_HEALTH" "$CT_SERVE" >/dev/null || true
    [ "$rc" -ne 0 ] || rm -rf "$TMP"
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { printf '\n== %s (%s s)\n' "$*" "$(elapsed "$t0")"; }
# podman schedules HEALTHCHECKs with systemd timers and logs an error for each container when
# there is no systemd (CI); the test runs the checks itself (podman healthcheck run).
podman() { command podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }
# in_image CMD...: runs CMD in a throwaway container of the image (entrypoint bypassed).
in_image() { podman run --rm --network none --entrypoint "$1" "$IMAGE" "${@:2}"; }

# ---- 0. base images and the build ----------------------------------------------------------
build_image() {
  step "base images (tests/harness/podman-base-images.sh)"
  local t
  t=$(now)
  bash "$ROOT/tests/harness/podman-base-images.sh"
  T[base images]=$(elapsed "$t")
  step "podman build --pull=never --format docker -f container/Dockerfile -t $IMAGE ."
  # buildah keeps RUN --mount=type=cache contents under $TMPDIR: in the CI cache, so a warm
  # CI rebuilds in minutes. --format docker: the OCI format drops HEALTHCHECK and SHELL.
  mkdir -p "$PODMAN_CACHE_DIR/tmp"
  t=$(now)
  (cd "$ROOT" && TMPDIR=$PODMAN_CACHE_DIR/tmp podman build --pull=never --format docker \
    --network host --layers --ignorefile container/Dockerfile.dockerignore \
    -f container/Dockerfile -t "$IMAGE" . >"$TMP/build.log" 2>&1) || {
    tail -n 40 "$TMP/build.log" >&2
    die "podman build of container/Dockerfile failed (full log: $TMP/build.log)"
  }
  T[image build]=$(elapsed "$t")
  # Untagged layers of older builds (each source change leaves some) are dropped after three
  # days; recent ones stay as the build cache.
  podman image prune -f --filter until=72h >/dev/null 2>&1 || true
  grep -E '^(\[[0-9]/[0-9]\] )?STEP|Finished .release' "$TMP/build.log" | cut -c 1-150 | sed 's/^/  /'
  local bytes
  bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  SIZE_MB=$((bytes / 1000000))
  echo "image $IMAGE: $SIZE_MB MB, built in ${T[image build]} s"
}

# ---- 1. what is in the image ------------------------------------------------------------------
check_image() {
  step "image contents: apt-get check, no Python, mount.nfs, stripped binaries, config"
  in_image apt-get check >"$TMP/apt-check.log" 2>&1 || {
    cat "$TMP/apt-check.log" >&2
    die "apt-get check fails in the image: dpkg has broken dependencies (images FROM it cannot install packages)"
  }
  echo "apt-get check: ok"
  local py
  # shellcheck disable=SC2016  # expanded by the container's shell
  py=$(in_image /bin/sh -c 'ls -d /usr/bin/python* /usr/lib/python3* 2>/dev/null;
    dpkg-query -W -f="\${db:Status-Abbrev} \${Package}\n" | awk "\$1 == \"ii\" && \$2 ~ /python/ { print \$2 }"')
  [ -z "$py" ] || die "Python in the image: $(echo "$py" | paste -sd ' ')"
  echo "python: none (no files, no packages)"
  local nfs
  # shellcheck disable=SC2016  # expanded by the container's shell
  nfs=$(in_image /bin/sh -c 'mount.nfs4 -V 2>&1; ldd /usr/sbin/mount.nfs | grep -c "not found"; dpkg-query -W -f="\${db:Status-Abbrev}" nfs-common 2>/dev/null || echo none') || true
  echo "$nfs" | grep 'nfs-utils' >/dev/null || die "mount.nfs4 does not run in the image: $nfs"
  [ "$(echo "$nfs" | sed -n 2p)" = 0 ] || die "mount.nfs lacks shared libraries in the image: $nfs"
  case $(echo "$nfs" | sed -n 3p) in
    ii*) die "nfs-common is installed as a package (it depends on python3)" ;;
  esac
  echo "mount.nfs4 -V: $(echo "$nfs" | head -n 1 | sed 's/^mount.nfs4: //'); all its libraries present; nfs-common not installed as a package"
  podman rm -f "$CT_HEALTH" >/dev/null 2>&1 || true
  podman create --name "$CT_HEALTH" "$IMAGE" >/dev/null
  local b
  for b in efs-proxy efs-webdav; do
    podman cp "$CT_HEALTH:/usr/local/bin/$b" "$TMP/$b"
    if readelf -S --wide "$TMP/$b" | grep -E '\.debug_(info|line)' >/dev/null; then
      die "/usr/local/bin/$b in the image carries debug info: the Dockerfile must not build it in"
    fi
    echo "$b: $(($(stat -c %s "$TMP/$b") / 1000000)) MB, no .debug_* sections"
  done
  podman rm -f "$CT_HEALTH" >/dev/null
  local cfg
  cfg=$(podman image inspect --format '{{.Config.Healthcheck.Test}} | {{.Config.Entrypoint}} | {{.Config.StopSignal}} | {{.Config.ExposedPorts}}' "$IMAGE")
  case $cfg in
    *'/usr/local/bin/entrypoint.sh health'*'/usr/bin/tini -- /usr/local/bin/entrypoint.sh'*SIGTERM*8080/tcp*) ;;
    *) die "image config lost HEALTHCHECK/ENTRYPOINT/STOPSIGNAL/EXPOSE (built without --format docker?): $cfg" ;;
  esac
  echo "config: healthcheck, tini entrypoint, SIGTERM, 8080/tcp: $cfg"
}

# ---- 2. a real start: proxy up, mount refused by the kernel --------------------------------
# bridge_gateway: the host's address on podman's default bridge, where containers reach the
# test's own servers (nothing listens on other host addresses).
bridge_gateway() {
  local gw
  gw=$(podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}')
  [ -n "$gw" ] || die "podman's default network has no gateway (podman network inspect podman)"
  if ! ip -o addr show | grep -F " $gw/" >/dev/null; then
    # The first container on the default network creates the bridge.
    podman run --rm --entrypoint true "$IMAGE" >"$TMP/bridge.log" 2>&1 || true
  fi
  ip -o addr show | grep -F " $gw/" >/dev/null ||
    die "no host interface has podman's gateway $gw: the CNI bridge did not come up (ip addr; podman network inspect podman; podman said: $(tr '\n' ' ' <"$TMP/bridge.log" 2>/dev/null))"
  echo "$gw"
}

start_mount_target() {
  local gw=$1
  if [ ! -x "$BIN_DIR/fake-mount-target" ]; then
    log "building fake-mount-target (cargo build -p efs-proxy-tests --bin fake-mount-target)"
    (cd "$ROOT" && cargo build --locked -p efs-proxy-tests --bin fake-mount-target) >&2 ||
      die "cannot build fake-mount-target; or set BIN_DIR to a directory holding it" 2
  fi
  "$BIN_DIR/fake-mount-target" --listen "$gw:0" --pki-dir "$TMP/pki" \
    --server-name "$SERVER_NAME" --bind ready \
    >"$TMP/target.out" 2>"$TMP/target.log" </dev/null &
  target_pid=$!
  TARGET=  # set by await_listening
  await_listening TARGET target "$target_pid"
  chmod -R a+rX "$TMP/pki"
}

mount_fails() {
  step "real start: efs-proxy to the test mount target, NFS mount on a kernel without NFS"
  local gw port t rc
  gw=$(bridge_gateway)
  start_mount_target "$gw"
  echo "mount target (TLS, client certificate, bind READY) on $TARGET"
  mkdir -m 0700 "$TMP/aws"
  port=$(free_port)
  t=$(now)
  podman run -d --name "$CT_FAIL" "${COMPOSE_FLAGS[@]}" "${COMPOSE_ENV[@]}" \
    -e EFS_PROXY_ARGS="--target $TARGET --server-name $SERVER_NAME --ca-file /pki/ca.pem --cert /pki/client.pem --key /pki/client.key" \
    -v "$TMP/pki:/pki:ro" -v "$TMP/aws:/root/.aws:ro" -p "127.0.0.1:$port:8080" "$IMAGE" >/dev/null
  rc=$(timeout 60 podman wait "$CT_FAIL") || die "the container still runs 60 s after start: the failed mount was not reported"
  T[mount failure]=$(elapsed "$t")
  podman logs "$CT_FAIL" >"$TMP/mountfail.log" 2>&1
  grep -E '^entrypoint: |mount.nfs|layer=' "$TMP/mountfail.log" | cut -c 1-200 | sed 's/^/  /'
  [ "$rc" = 1 ] || die "the entrypoint exited $rc after the failed mount (expected 1)"
  grep -q 'efs-proxy listening on' "$TMP/mountfail.log" ||
    die "efs-proxy did not start against the test mount target (see $TMP/mountfail.log)"
  grep -qi 'No such device' "$TMP/mountfail.log" ||
    die "the mount did not fail with 'No such device' (this kernel has no NFS client): see $TMP/mountfail.log"
  grep -q '^entrypoint: fix: .*kernel has no NFSv4 client' "$TMP/mountfail.log" ||
    die "no 'entrypoint: fix:' line about the kernel's NFSv4 client (see $TMP/mountfail.log)"
  awk -v s="${T[mount failure]}" 'BEGIN { exit !(s < 30) }' ||
    die "the failed start took ${T[mount failure]} s (expected a diagnosis within seconds)"
  grep -q 'client_cert_bytes=[1-9]' "$TMP/target.log" ||
    die "the mount target saw no TLS handshake with a client certificate from the container"
  echo "exit 1 after ${T[mount failure]} s with the kernel diagnosis; the mount target saw the container's TLS client"

  step "HEALTHCHECK of a container without the NFS mount: unhealthy"
  podman run -d --name "$CT_HEALTH" --entrypoint sleep "$IMAGE" 300 >/dev/null
  local out
  if out=$(podman healthcheck run "$CT_HEALTH" 2>&1); then
    die "podman healthcheck run said healthy without a mount: $out"
  fi
  echo "$out" | grep unhealthy >/dev/null || die "podman healthcheck run: expected 'unhealthy', got: $out"
  podman exec "$CT_HEALTH" /usr/local/bin/entrypoint.sh health >"$TMP/health.out" 2>&1 || true
  echo "podman healthcheck run: $out ($(head -n 1 "$TMP/health.out"))"
  podman rm -f -t 0 "$CT_HEALTH" >/dev/null
}

# ---- 3. WebDAV from a directory: litmus, Finder, health, stop ---------------------------------
serve_start() {
  step "TEST_SERVE_DIR: WebDAV from a directory, password file as docker-mount.sh hands it over"
  grep -q TEST_SERVE_DIR "$ROOT/container/entrypoint.sh" ||
    die "container/entrypoint.sh has no TEST_SERVE_DIR switch (the test-only 'serve WebDAV from DIR' mode this test needs)"
  mkdir -m 0755 "$TMP/served"
  PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  (umask 077 && printf '%s\n' "$PASSWORD" >"$TMP/webdav-password")
  PORT=$(free_port)
  URL=http://127.0.0.1:$PORT
  local t
  t=$(now)
  podman run -d --name "$CT_SERVE" "${COMPOSE_FLAGS[@]}" "${COMPOSE_ENV[@]}" \
    -e TEST_SERVE_DIR=/srv/webdav-test -v "$TMP/served:/srv/webdav-test" \
    -e WEBDAV_PASSWORD_FILE=/run/secrets/webdav-password -e WEBDAV_PUBLIC_PORT="$PORT" \
    -v "$TMP/webdav-password:/run/secrets/webdav-password:ro" -v "$TMP/aws:/root/.aws:ro" \
    -p "127.0.0.1:$PORT:8080" "$IMAGE" >/dev/null
  local deadline=$((SECONDS + 60))
  until podman logs "$CT_SERVE" 2>&1 | grep '^entrypoint: ready' >/dev/null; do
    [ "$(podman inspect --format '{{.State.Running}}' "$CT_SERVE")" = true ] || {
      podman logs "$CT_SERVE" >&2
      die "the TEST_SERVE_DIR container stopped before 'entrypoint: ready'"
    }
    [ "$SECONDS" -lt "$deadline" ] || die "no 'entrypoint: ready' within 60 s"
    sleep 0.2
  done
  T[serve ready]=$(elapsed "$t")
  podman logs "$CT_SERVE" 2>&1 | grep '^entrypoint: ' | sed 's/^/  /'
  local code
  code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X OPTIONS "$URL/")
  [ "$code" = 401 ] || die "OPTIONS without the password answered $code on $URL (expected 401: the password file is not in force)"
  echo "ready in ${T[serve ready]} s on $URL (published 127.0.0.1:$PORT); without the password: 401"
  # The entrypoint confines efs-webdav to the served tree (--chroot): its root directory, as
  # the kernel keeps it, is the served directory, so no symbolic link leads out, race or not.
  local confined
  confined=$(podman exec "$CT_SERVE" sh -c \
    'for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = efs-webdav ] && readlink "$d/root"; done')
  [ "$confined" = /srv/webdav-test ] ||
    die "efs-webdav's root directory is '${confined:-?}', not the served /srv/webdav-test: the entrypoint no longer passes --chroot"
  echo "efs-webdav confined to the served directory (its root directory: $confined)"
}

run_litmus() {
  step "litmus (basic copymove props locks http) on the published port"
  local t suite line failed=0
  t=$(now)
  (cd "$TMP" && TESTS="basic copymove props locks http" timeout 300 \
    litmus -k "$URL/" s3files "$PASSWORD" >"$TMP/litmus.log" 2>&1) || true
  T[litmus]=$(elapsed "$t")
  grep -E '^<- summary' "$TMP/litmus.log" || true
  for suite in basic copymove props locks http; do
    line=$(grep -E "^<- summary for \`$suite'" "$TMP/litmus.log" || true)
    if ! [[ $line =~ tests\ run:\ ([0-9]+)\ passed,\ 0\ failed\.\ 100\.0% ]]; then
      log "litmus $suite: ${line:-no summary}"
      failed=1
    fi
  done
  [ "$failed" = 0 ] || die "litmus did not pass 100 % through the image (full output: $TMP/litmus.log)"
  local left
  left=$(find "$TMP/served" -mindepth 1 ! -path "$TMP/served/litmus" | sed -n 1,5p)
  [ -z "$left" ] || die "files left in the served directory after litmus: $left"
}

# dav METHOD PATH [curl args...]: a request as Finder sends it; prints the status code, the
# body goes to $TMP/body, the headers to $TMP/headers.
dav() {
  curl -s -m 120 -u "s3files:$PASSWORD" -A 'WebDAVFS/3.0.0 (03008000) Darwin/23.0.0 (x86_64)' \
    -X "$1" -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "${@:3}" "$URL$2"
}
expect_code() { # expect_code WHAT GOT WANT...
  local what=$1 got=$2 w
  shift 2
  for w in "$@"; do [ "$got" = "$w" ] && return 0; done
  die "$what answered $got (expected $*): $(head -c 300 "$TMP/body")"
}

finder_session() {
  step "Finder session (WebDAVFS/3.0.0): OPTIONS, quota, LOCK, chunked PUT, UNLOCK, ._* and .DS_Store, GET"
  local t file=Report.bin size=$((4 << 20)) want got token
  t=$(now)
  expect_code OPTIONS "$(dav OPTIONS /)" 200
  grep -qiE '^dav:.*2' "$TMP/headers" || die "OPTIONS: no DAV class 2 (locking), Finder mounts read-only: $(grep -i '^dav' "$TMP/headers")"
  expect_code "PROPFIND quota" "$(dav PROPFIND / -H 'Depth: 0' -H 'Content-Type: text/xml' --data-binary \
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>')" 207
  grep -qE 'quota-available-bytes>[0-9]+<' "$TMP/body" ||
    die "PROPFIND quota-available-bytes: no number in a propstat (Finder cannot show free space): $(head -c 400 "$TMP/body")"
  echo "quota: $(grep -oE 'quota-(available|used)-bytes>[0-9]+' "$TMP/body" | paste -sd ' ')"
  expect_code LOCK "$(dav LOCK "/$file" -H 'Depth: 0' -H 'Timeout: Second-600' -H 'Content-Type: text/xml' --data-binary \
    '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>http://www.apple.com/webdav_fs/</D:href></D:owner></D:lockinfo>')" 200 201
  token=$(sed -n 's/^[Ll]ock-[Tt]oken: *<\([^>]*\)>.*/\1/p' "$TMP/headers" | tr -d '\r')
  [ -n "$token" ] || die "LOCK: no Lock-Token header"
  head -c "$size" /dev/urandom >"$TMP/$file"
  want=$(sha256sum "$TMP/$file" | cut -d' ' -f1)
  expect_code "chunked PUT" "$(dav PUT "/$file" -T "$TMP/$file" -H 'Transfer-Encoding: chunked' \
    -H "X-Expected-Entity-Length: $size" -H "If: (<$token>)")" 201 204
  expect_code UNLOCK "$(dav UNLOCK "/$file" -H "Lock-Token: <$token>")" 204
  local junk
  for junk in "._$file" .DS_Store; do
    printf 'finder metadata %s\n' "$junk" >"$TMP/junk"
    expect_code "PUT $junk" "$(dav PUT "/$junk" -T "$TMP/junk")" 201 204
    expect_code "GET $junk" "$(dav GET "/$junk")" 200
    cmp -s "$TMP/body" "$TMP/junk" || die "GET $junk did not return what was PUT"
    [ ! -e "$TMP/served/$junk" ] || die "$junk reached the served directory: Finder metadata would become S3 objects"
  done
  expect_code GET "$(dav GET "/$file")" 200
  got=$(sha256sum "$TMP/body" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "GET $file: sha256 $got, PUT $want"
  [ "$(sha256sum "$TMP/served/$file" | cut -d' ' -f1)" = "$want" ] || die "$file in the served directory differs from what was PUT"
  T[finder session]=$(elapsed "$t")
  echo "4 MiB chunked PUT under a lock, read back and in the served directory: sha256 $want"
  echo "._$file and .DS_Store answered but absent; served directory: $(find "$TMP/served" -mindepth 1 -maxdepth 1 -printf '%f ')"
}

health_and_stop() {
  step "HEALTHCHECK healthy, then podman stop (SIGTERM through tini, 60 s grace as compose)"
  local out t rc
  out=$(podman healthcheck run "$CT_SERVE" 2>&1) || die "podman healthcheck run: unhealthy while serving: $out"
  echo "podman healthcheck run: ${out:-healthy}"
  t=$(now)
  podman stop -t 60 "$CT_SERVE" >/dev/null
  T[stop]=$(elapsed "$t")
  rc=$(podman inspect --format '{{.State.ExitCode}}' "$CT_SERVE")
  podman logs "$CT_SERVE" 2>&1 | grep '^entrypoint: ' | tail -n 3 | sed 's/^/  /'
  [ "$rc" = 0 ] || die "the container exited $rc on SIGTERM (expected 0)"
  awk -v s="${T[stop]}" 'BEGIN { exit !(s < 20) }' || die "podman stop took ${T[stop]} s: SIGTERM was not handled (SIGKILL after the grace period?)"
  podman logs "$CT_SERVE" 2>&1 | grep '^entrypoint: stopped' >/dev/null || die "no 'entrypoint: stopped' line after SIGTERM"
  echo "stopped cleanly (exit 0) in ${T[stop]} s"
}

build_image
check_image
mount_fails
serve_start
run_litmus
finder_session
health_and_stop

step "summary"
for k in "base images" "image build" "mount failure" "serve ready" litmus "finder session" stop; do
  printf '  %-16s %6s s\n' "$k" "${T[$k]:-?}"
done
echo "  image size       $SIZE_MB MB ($IMAGE, podman storage: $PODMAN_STORAGE_DRIVER)"
log "PASS in $(elapsed "$t0") s"
