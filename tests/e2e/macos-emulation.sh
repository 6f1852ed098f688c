#!/usr/bin/env bash
# container/docker-mount.sh as a Mac user runs it, on Linux: stand-ins on PATH for the macOS
# and Docker Desktop commands it calls (uname, mount, mount_webdav, umount, diskutil, open,
# defaults, docker, curl, tar), printing what the real ones print, with their state (Docker
# daemon up or not, the container, macOS's mount table) kept in a temp directory so that
# mount, umount and mount_webdav agree. The mount point goes through a symbolic link, as
# /tmp -> /private/tmp does on macOS, whose `mount` prints the resolved path.
#
# Cases: Docker Desktop not running (up, status); up (random password file 0600 handed to
# the container and, through `mount_webdav -a FD`, to the mount, never on a command line; a
# private directory instead of ~/.aws); status; a second up while mounted; down (unmounts the
# resolved path, then stops the container); status after down; up again (same password); a
# failing up (the container crash-loops: up fails within seconds with the entrypoint's error
# and fix, and stops it); ls/cp with '..' (no container command runs); cp from the Mac
# (COPYFILE_DISABLE=1 for tar).
#
#   tests/e2e/macos-emulation.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=macos-emulation
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
DM=${DOCKER_MOUNT_SH:-$ROOT/container/docker-mount.sh}  # another copy: to show what the test catches

t0=$(now)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/efs-macos-emulation.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
BIN=$TMP/bin STATE=$TMP/state
mkdir -p "$BIN" "$STATE" "$TMP/home" "$TMP/T" "$TMP/private/tmp"
ln -s "$TMP/private/tmp" "$TMP/tmp"            # /tmp -> /private/tmp
MNT=$TMP/tmp/s3files                           # what the user names
RESOLVED=$(cd -P "$TMP/private/tmp" && pwd -P)/s3files  # what macOS's mount prints
SOCK=unix:///Users/x/.docker/run/docker.sock

# ---- stand-ins ----------------------------------------------------------------------------
stub() { cat >"$BIN/$1"; chmod +x "$BIN/$1"; }
stub uname <<'EOF'
#!/bin/sh
case ${1:-} in -m) echo arm64 ;; -r) echo 23.4.0 ;; *) echo Darwin ;; esac
EOF
stub open <<'EOF'
#!/bin/sh
echo "open $*" >>"$EMU_STATE/open.log"
EOF
stub defaults <<'EOF'
#!/bin/sh
# `defaults read` of a pair that was never written, as macOS 14 prints it
printf '%s defaults[4242:123456] \nThe domain/default pair of (%s, %s) does not exist\n' "$(date '+%Y-%m-%d %H:%M:%S.000')" "$2" "$3" >&2
exit 1
EOF
stub curl <<'EOF'
#!/bin/sh
# status: OPTIONS on the published port; 401 while the container runs (password required)
if [ "$(cat "$EMU_STATE/container" 2>/dev/null)" = running ]; then printf 401; else printf 000; exit 7; fi
EOF
stub tar <<'EOF'
#!/bin/sh
echo "tar COPYFILE_DISABLE=${COPYFILE_DISABLE:-unset} $*" >>"$EMU_STATE/calls"
exec /bin/tar "$@"
EOF
stub mount <<'EOF'
#!/bin/bash
# macOS 14's mount: the table only (this script never mounts through it)
[ $# -eq 0 ] || { echo "mount stand-in: unexpected arguments: $*" >&2; exit 99; }
cat <<'TABLE'
/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)
devfs on /dev (devfs, local, nobrowse)
/dev/disk3s6 on /System/Volumes/VM (apfs, local, noexec, journaled, noatime, nobrowse)
/dev/disk3s5 on /System/Volumes/Data (apfs, local, journaled, nobrowse, protect)
map auto_home on /System/Volumes/Data/home (autofs, automounted, nobrowse)
TABLE
cat "$EMU_STATE/mounts" 2>/dev/null || true
EOF
stub umount <<'EOF'
#!/bin/bash
# macOS umount: resolves the path; "not currently mounted" otherwise
echo "umount $*" >>"$EMU_STATE/calls"
p=$(cd -P "$(dirname "$1")" 2>/dev/null && pwd -P)/$(basename "$1")
if ! grep -qF " on $p (" "$EMU_STATE/mounts" 2>/dev/null; then
  echo "umount: $1: not currently mounted" >&2
  exit 1
fi
grep -vF " on $p (" "$EMU_STATE/mounts" >"$EMU_STATE/mounts.new" || true
mv "$EMU_STATE/mounts.new" "$EMU_STATE/mounts"
EOF
stub diskutil <<'EOF'
#!/bin/bash
echo "diskutil $*" >>"$EMU_STATE/calls"
exec umount "${@: -1}"
EOF
stub mount_webdav <<'EOF'
#!/bin/bash
# mount_webdav [-s] [-S] [-i] [-a fd] [-o options] [-v volume_name] URL node: reads the
# credentials from fd as webdavfs_agent does (four big-endian length + bytes fields), zeroes
# the file, mounts; exit status ECANCELED (89) for wrong credentials, EBUSY (16) for a URL
# already mounted, ENOENT (2) for a missing node.
echo "mount_webdav $*" >>"$EMU_STATE/calls"
fd='' vol=''
while getopts 'sSia:o:v:' o; do
  case $o in a) fd=$OPTARG ;; v) vol=$OPTARG ;; *) ;; esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "usage: mount_webdav [-s] [-S] [-a<fd>] [-o options] [-v <volume name>]" >&2; exit 22; }
url=$1 node=$2
case $url in */) ;; *) url=$url/ ;; esac
real=$(cd -P "$node" 2>/dev/null && pwd -P) || exit 2
if grep -q "^$url on " "$EMU_STATE/mounts" 2>/dev/null; then exit 16; fi
user='' pass=''
if [ -n "$fd" ]; then
  hex=$(od -An -v -tx1 <&"$fd" | tr -s ' \n' ' ')
  read -r -a b <<<"$hex"
  i=0 fields=()
  for _ in 1 2 3 4; do
    [ $((i + 4)) -le ${#b[@]} ] || { fields=(); break; }
    len=$((16#${b[i]}${b[i + 1]}${b[i + 2]}${b[i + 3]}))
    i=$((i + 4))
    [ "$len" -lt 256 ] || { fields=(); break; }
    f=''
    for ((j = 0; j < len; j++)); do f+=$(printf "\\x${b[i + j]}"); done
    i=$((i + len))
    fields+=("$f")
  done
  if [ ${#fields[@]} -eq 4 ]; then user=${fields[0]} pass=${fields[1]}; fi
  size=$(wc -c </proc/self/fd/"$fd")
  head -c "$size" /dev/zero >/proc/self/fd/"$fd"
  echo "credentials: user=$user, $(printf '%s' "$pass" | wc -c) bytes of password" >>"$EMU_STATE/calls"
fi
expected=$(head -n 1 "$EMU_STATE/served-password" 2>/dev/null || true)
if [ "$user" != s3files ] || [ -z "$pass" ] || [ "$pass" != "$expected" ]; then
  exit 89  # the server answered 401 and no UI may ask (or the user cancelled)
fi
echo "$url on $real (webdav, nodev, noexec, nosuid, mounted by ${USER:-alice})" >>"$EMU_STATE/mounts"
echo "volume name: ${vol:-$(basename "$real")}" >>"$EMU_STATE/calls"
EOF
stub docker <<'EOF'
#!/bin/bash
# Docker Desktop's CLI: its daemon is up when $EMU_STATE/daemon exists; the container's state
# lives in $EMU_STATE (container, restarts, log); $EMU_STATE/scenario is ok or crashloop.
S=$EMU_STATE
echo "docker $*" >>"$S/calls"
down_msg="Cannot connect to the Docker daemon at unix:///Users/x/.docker/run/docker.sock. Is the docker daemon running?"
daemon() { [ -f "$S/daemon" ] || { echo "$down_msg" >&2; exit 1; }; }
unexpected() { echo "docker stand-in: unexpected: $*" >&2; exit 99; }
log_ok() {
  cat <<'LOG'
entrypoint: efs-proxy run --listen 127.0.0.1:20049 --target nlb-0123.elb.ca-central-1.amazonaws.com:2049 --fs-id fs-0123456789abcdef0 --region ca-central-1 --service s3files --az-id cac1-az1
entrypoint: efs-proxy listening on 127.0.0.1:20049
entrypoint: preflight (efs-proxy check): DNS, TCP, TLS, client certificate and bind passed
entrypoint: mounted /mnt/s3files
entrypoint: WebDAV on 0.0.0.0:8080 serving /mnt/s3files (basic authentication, user s3files), public port 8080
entrypoint: ready
LOG
}
log_fail() {
  cat <<'LOG'
entrypoint: efs-proxy run --listen 127.0.0.1:20049 --target nlb-0123.elb.ca-central-1.amazonaws.com:2049 --fs-id fs-0123456789abcdef0 --region ca-central-1 --service s3files --az-id cac1-az1
entrypoint: efs-proxy listening on 127.0.0.1:20049
entrypoint: preflight (efs-proxy check): step tcp failed: unreachable: connecting to 15.222.1.2:2049 timed out after 10 s
entrypoint: error: no TCP connection to the mount target
entrypoint: fix: TCP 2049 to the NLB is not reachable: its security group must allow your public IP (infra context allowedCidr; curl -s https://checkip.amazonaws.com), and NLB_DNS must be the stack's NlbDns output
LOG
}
case ${1:-} in
  info)
    printf 'Client:\n Version:    26.0.0\n Context:    desktop-linux\n Debug Mode: false\n\nServer:\n'
    if [ ! -f "$S/daemon" ]; then
      echo "ERROR: $down_msg"
      echo "errors pretty printing info" >&2
      exit 1
    fi
    printf ' Containers: 1\n Server Version: 26.0.0\n Operating System: Docker Desktop\n'
    ;;
  inspect)
    daemon
    [ "$2" = -f ] && [ "$4" = s3files ] || unexpected "$*"
    if [ ! -f "$S/container" ]; then echo "Error: No such object: s3files" >&2; exit 1; fi
    n=$(($(cat "$S/inspections" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$S/inspections"
    status=$(cat "$S/container") restarts=0 health=healthy
    if [ "$(cat "$S/scenario")" = crashloop ] && [ "$status" != exited ]; then
      # the first look sees the first run starting; then Docker restarts it again and again
      if [ "$n" -ge 2 ]; then
        status=restarting restarts=$((n - 1)) health=starting
        for _ in $(seq "$restarts"); do log_fail; done >"$S/log"
      else
        status=running health=starting
      fi
      echo "$status" >"$S/container"
    fi
    f=$3
    f=${f//'{{.State.Status}}'/$status}
    f=${f//'{{.RestartCount}}'/$restarts}
    f=${f//'{{.State.StartedAt}}'/2024-05-02T10:00:0$((n % 10)).123456789Z}
    f=${f//'{{if .State.Health}}{{.State.Health.Status}}{{end}}'/$health}
    case $f in *'{{'*) unexpected "template $3" ;; esac
    echo "$f"
    ;;
  logs)
    daemon
    [ "${*: -1}" = s3files ] || unexpected "$*"
    cat "$S/log" >&2 2>/dev/null || true  # the entrypoint writes to stderr
    ;;
  compose)
    shift
    [ "$1" != version ] || { echo "Docker Compose version v2.26.1-desktop.1"; exit 0; }
    [ "$1" = -f ] || unexpected "compose $*"
    shift 2
    daemon
    case $1 in
      up)
        [ "$*" = "up -d --build" ] || unexpected "compose $*"
        for v in NLB_DNS FS_ID AZ_ID AWS_REGION AWS_CONFIG_DIR WEBDAV_PORT WEBDAV_USER S3FILES_PASSWORD_FILE; do
          echo "$v=${!v-}"
        done >"$S/compose-env"
        # what the container reads at /run/secrets/webdav-password
        cp "$S3FILES_PASSWORD_FILE" "$S/served-password" || exit 1
        echo running >"$S/container"
        rm -f "$S/inspections"
        if [ "$(cat "$S/scenario")" = ok ]; then log_ok >"$S/log"; else : >"$S/log"; fi
        echo " Container s3files  Started" >&2
        ;;
      stop) echo exited >"$S/container"; echo " Container s3files  Stopped" >&2 ;;
      down) rm -f "$S/container" "$S/log"; echo " Container s3files  Removed" >&2 ;;
      exec)
        [ "$(cat "$S/container" 2>/dev/null)" = running ] || { echo "service \"s3files\" is not running" >&2; exit 1; }
        case "$*" in
          "exec -T s3files /usr/local/bin/entrypoint.sh health") echo "ok: /mnt/s3files mounted, WebDAV on port 8080" ;;
          "exec -T s3files sh -c "*) echo "127.0.0.1:/ /mnt/s3files nfs4 rw,relatime,vers=4.2 0 0" ;;
          "exec -T s3files tar -C "*" -xf -") cat >"$S/cp-in.tar" ;;
          "exec -T s3files ls -la -- "*) echo "total 0" ;;
          *) unexpected "compose $*" ;;
        esac
        ;;
      *) unexpected "compose $*" ;;
    esac
    ;;
  *) unexpected "$*" ;;
esac
EOF

# ---- running it ---------------------------------------------------------------------------
# dm ARGS...: docker-mount.sh as the Mac user (clean environment, these stand-ins first on
# PATH, no ~/.aws); output in $TMP/out, exit status in RC, seconds in SECS.
dm() {
  local ts
  ts=$(now)
  set +e
  env -i PATH="$BIN:/usr/bin:/bin" HOME="$TMP/home" USER=alice TMPDIR="$TMP/T/" EMU_STATE="$STATE" \
    CDK_OUTPUTS="$TMP/none.json" S3FILES_MOUNT="$MNT" \
    bash "$DM" "$@" >"$TMP/out" 2>&1
  RC=$?
  set -e
  SECS=$(elapsed "$ts")
}
has() { grep -qF -- "$1" "$TMP/out" || { cat "$TMP/out" >&2; die "$2: expected '$1' in its output"; }; }
lacks() { ! grep -qF -- "$1" "$TMP/out" || { cat "$TMP/out" >&2; die "$2: unexpected '$1' in its output"; }; }
ok() { [ "$RC" = 0 ] || { cat "$TMP/out" >&2; die "$1: exit status $RC"; }; }
failed() { [ "$RC" = 1 ] || { cat "$TMP/out" >&2; die "$1: exit status $RC, expected 1"; }; }
mounted() { grep -qF " on $RESOLVED (webdav," "$STATE/mounts" 2>/dev/null; }
ARGS=(nlb-0123.elb.ca-central-1.amazonaws.com --fs-id fs-0123456789abcdef0 --region ca-central-1 --az-id cac1-az1)
echo ok >"$STATE/scenario"

# 1. Docker Desktop not running
dm up "${ARGS[@]}"
failed "up, Docker not running"
has "docker-mount: error: Docker Desktop is not running (docker: Cannot connect to the Docker daemon at $SOCK. Is the docker daemon running?)" "up, Docker not running"
has "docker-mount: fix: start it: open -a Docker (or Docker in Launchpad), wait until its menu-bar whale stops moving, then run this again" "up, Docker not running"
lacks "errors pretty printing info" "up, Docker not running"
[ ! -e "$STATE/open.log" ] || die "up opened an application by itself: $(cat "$STATE/open.log")"
dm status
ok "status, Docker not running"
has "docker: Docker Desktop is not running" "status, Docker not running"
has "macOS: $RESOLVED not mounted" "status, Docker not running"
echo "Docker not running: up fails with 'Docker Desktop is not running' and 'open -a Docker'; status says so"

# 2. up: password file, private AWS directory, mount_webdav without a prompt
touch "$STATE/daemon"
dm up "${ARGS[@]}"
ok "up"
CFG=$TMP/home/.config/s3files
PW=$CFG/webdav-password
[ -f "$PW" ] || die "up made no $PW"
[ "$(stat -c %a "$PW")" = 600 ] || die "$PW has mode $(stat -c %a "$PW"), expected 600"
[ "$(stat -c %a "$CFG")" = 700 ] || die "$CFG has mode $(stat -c %a "$CFG"), expected 700"
password=$(head -n 1 "$PW")
[[ $password =~ ^[0-9a-f]{48}$ ]] || die "the password is not 48 random hex digits: '$password'"
grep -qxF "S3FILES_PASSWORD_FILE=$PW" "$STATE/compose-env" || die "compose did not get S3FILES_PASSWORD_FILE=$PW"
grep -qxF "WEBDAV_PORT=8080" "$STATE/compose-env" || die "compose did not get WEBDAV_PORT=8080"
grep -qxF "WEBDAV_USER=s3files" "$STATE/compose-env" || die "compose did not get WEBDAV_USER=s3files"
grep -qxF "AWS_CONFIG_DIR=$CFG/no-aws-config" "$STATE/compose-env" ||
  die "without ~/.aws, compose must get the private $CFG/no-aws-config: $(grep AWS_CONFIG_DIR "$STATE/compose-env")"
[ "$(stat -c %a "$CFG/no-aws-config")" = 700 ] || die "$CFG/no-aws-config is not mode 700"
[ -z "$(ls -A "$TMP/T")" ] || die "files left in TMPDIR (a predictable path or the credentials file): $(ls -A "$TMP/T")"
mounted || die "up did not mount $RESOLVED: $(cat "$STATE/mounts" 2>/dev/null)"
grep -qxF "mount_webdav -v s3files -a 3 http://127.0.0.1:8080/ $MNT" "$STATE/calls" ||
  die "mount_webdav was not called with -a 3: $(grep mount_webdav "$STATE/calls")"
grep -qxF "credentials: user=s3files, 48 bytes of password" "$STATE/calls" || die "mount_webdav did not read the credentials from its fd"
! grep -qF -- "$password" "$STATE/calls" || die "the password appeared on a command line"
has "mounted at $MNT" "up"
has "defaults write com.apple.desktopservices DSDontWriteNetworkStores -bool true" "up"
echo "up: password $PW (0600, dir 0700) to the container and to mount_webdav -a 3 (not on any command line); ~/.aws absent: $CFG/no-aws-config (0700); mounted at $RESOLVED in ${SECS} s"

# 3. status
dm status
ok status
has "container: running (healthy)" status
has "macOS: mounted at $RESOLVED" status
has "webdav: http://127.0.0.1:8080/ answers OPTIONS with 401 (up; it asks for the password)" status

# 4. a second up while mounted: no second mount_webdav (it would fail: EBUSY)
: >"$STATE/calls"
dm up "${ARGS[@]}"
ok "second up"
has "$MNT is already mounted" "second up"
! grep -q '^mount_webdav' "$STATE/calls" || die "second up called mount_webdav again"
[ "$(head -n 1 "$PW")" = "$password" ] || die "second up changed the password"
echo "status: mounted at $RESOLVED; second up: already mounted, same password"

# 5. down: unmounts the resolved path first, then stops the container
: >"$STATE/calls"
dm down
ok down
mounted && die "down left $RESOLVED mounted"
[ "$(grep -n "^umount $RESOLVED\$" "$STATE/calls" | cut -d: -f1)" = 1 ] ||
  die "down did not unmount $RESOLVED first: $(cat "$STATE/calls")"
grep -q '^docker compose -f .* down$' "$STATE/calls" || die "down did not stop the container"
[ ! -e "$STATE/container" ] || die "down left the container"
dm status
ok "status after down"
has "container: not created" "status after down"
has "macOS: $RESOLVED not mounted" "status after down"
echo "down: unmounted $RESOLVED, then compose down; status: not mounted, not created"

# 6. up again
dm up "${ARGS[@]}"
ok "up again"
mounted || die "up again did not mount"
[ "$(head -n 1 "$PW")" = "$password" ] || die "up again changed the password"
dm down
ok "down again"
echo "up again: mounted with the same password; down"

# 7. a failing up: the container crash-loops
echo crashloop >"$STATE/scenario"
: >"$STATE/calls"
dm up "${ARGS[@]}"
failed "failing up"
awk -v s="$SECS" 'BEGIN { exit !(s < 10) }' || die "failing up took $SECS s (must fail within seconds)"
has "  entrypoint: preflight (efs-proxy check): step tcp failed: unreachable: connecting to 15.222.1.2:2049 timed out after 10 s" "failing up"
has "  entrypoint: error: no TCP connection to the mount target" "failing up"
has "  entrypoint: fix: TCP 2049 to the NLB is not reachable" "failing up"
has "docker-mount: error: the container could not mount the file system" "failing up"
[ "$(grep -c 'entrypoint: error:' "$TMP/out")" = 1 ] || die "failing up: the diagnosis is repeated per restart"
grep -q '^docker compose -f .* stop$' "$STATE/calls" || die "failing up did not stop the crash-looping container"
! grep -q '^mount_webdav' "$STATE/calls" || die "failing up called mount_webdav"
echo "failing up: exit 1 in $SECS s with the entrypoint's error and fix; container stopped; no mount"
echo ok >"$STATE/scenario"

# 8. ls / cp with '..': the error ends the command (no container command runs)
: >"$STATE/calls"
dm up "${ARGS[@]}" && ok "up for ls/cp"
: >"$STATE/calls"
dm ls ../x
failed "ls ../x"
has "docker-mount: error: '..' is not allowed in ../x" "ls ../x"
dm cp :/../etc/passwd "$TMP/x"
failed "cp :/../etc/passwd"
! grep -q '^docker compose' "$STATE/calls" || die "ls/cp with '..' still ran: $(grep '^docker compose' "$STATE/calls")"

# 9. cp from the Mac into a directory: macOS tar must add no ._* entries
mkdir -p "$TMP/report"
echo data >"$TMP/report/a.txt"
dm cp "$TMP/report" :/reports/
ok "cp dir in"
grep -q '^tar COPYFILE_DISABLE=1 -C ' "$STATE/calls" || die "cp ran tar without COPYFILE_DISABLE=1: $(grep '^tar' "$STATE/calls")"
tar -tf "$STATE/cp-in.tar" | grep -x 'report/a.txt' >/dev/null || die "cp did not stream report/a.txt"
echo "ls/cp '..': refused before any container command; cp from the Mac: COPYFILE_DISABLE=1 tar"

log "PASS in $(elapsed "$t0") s"
