#!/usr/bin/env bash
# One host command for the efs-proxy container (container/docker-compose.yml): an Amazon S3
# Files (or EFS) file system mounted inside the container over NFSv4.2 through efs-proxy, and
# published to this machine over WebDAV on 127.0.0.1, with a password.
#
#   docker-mount.sh up [NLB_DNS] [--fs-id ID] [--az-id AZ_ID] [--region REGION]
#       builds and starts the container, waits until it has mounted (a container that fails
#       at start is stopped at once, with the entrypoint's diagnosis); on macOS mounts the
#       WebDAV volume at /tmp/s3files (mount_webdav, no password prompt), on Linux prints the
#       URL. Missing values come from the environment (NLB_DNS, FS_ID, AZ_ID, AWS_REGION),
#       then from the infra stack's outputs: infra/cdk-outputs.json (`cdk deploy
#       --outputs-file cdk-outputs.json`), else `aws cloudformation describe-stacks`.
#   docker-mount.sh down              unmounts (macOS) and stops the container
#   docker-mount.sh shell             a shell in the container (the mount is /mnt/s3files)
#   docker-mount.sh ls [PATH]         lists PATH in the file system (default: its root)
#   docker-mount.sh cp SRC DST        copies a file or directory in or out; the file system
#                                     side is written :PATH (cp report.pdf :/reports/,
#                                     cp :/reports/report.pdf .)
#   docker-mount.sh status            container, health, mount and WebDAV state
#
# The WebDAV password: a random one, made by the first `up`, kept in
# ~/.config/s3files/webdav-password (mode 0600; user "s3files"); the container reads it from
# /run/secrets/webdav-password.
#
# env: STACK_NAME (default EfsProxyS3Files), CDK_OUTPUTS (default infra/cdk-outputs.json),
#      WEBDAV_PORT (default 8080), S3FILES_MOUNT (macOS mount point, default /tmp/s3files),
#      S3FILES_CONFIG_DIR (default ~/.config/s3files: the password file), WEBDAV_USER
#      (default s3files), WEBDAV_ALLOW_HOSTS (extra Host names for WebDAV), AWS credentials
#      (AWS_PROFILE or AWS_ACCESS_KEY_ID/...; ~/.aws is mounted read-only), DOCKER (default
#      docker).
# Runs with macOS's bash 3.2 too: no bash 4 features, no arrays (tests/e2e/container-static.sh
# checks).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COMPOSE_FILE=$HERE/docker-compose.yml
SERVICE=s3files
STACK=${STACK_NAME:-EfsProxyS3Files}
OUTPUTS=${CDK_OUTPUTS:-$ROOT/infra/cdk-outputs.json}
PORT=${WEBDAV_PORT:-8080}
MAC_MOUNT=${S3FILES_MOUNT:-/tmp/s3files}
CONFIG_DIR=${S3FILES_CONFIG_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/s3files}
PASSWORD_FILE=$CONFIG_DIR/webdav-password
DAV_USER=${WEBDAV_USER:-s3files}
DOCKER=${DOCKER:-docker}
REMOTE_ROOT=/mnt/s3files
READY_WAIT=180

say() { echo "docker-mount: $*" >&2; }
die() {
  echo "docker-mount: error: $1" >&2
  [ -z "${2:-}" ] || echo "docker-mount: fix: $2" >&2
  exit 1
}
usage() {
  sed -n '2,/^# Runs with/{s/^# \{0,1\}//;p;}' "$0" >&2
  exit 2
}
is_macos() { [ "$(uname -s)" = Darwin ]; }

# ---- Docker ---------------------------------------------------------------------------
# docker_check: true when the docker CLI, its daemon and compose v2 answer; otherwise sets
# DOCKER_PROBLEM and DOCKER_FIX.
DOCKER_PROBLEM='' DOCKER_FIX=''
docker_check() {
  local err line
  if ! command -v "$DOCKER" >/dev/null 2>&1; then
    DOCKER_PROBLEM="docker not found"
    DOCKER_FIX="install Docker Desktop (macOS) or docker-ce with the compose plugin (Linux)"
    return 1
  fi
  # `docker info` prints the daemon's error among its own output (stdout), so both are read.
  if ! err=$("$DOCKER" info 2>&1); then
    line=$(grep -m 1 'Cannot connect to the Docker daemon' <<<"$err" || true)
    if [ -n "$line" ] && is_macos; then
      DOCKER_PROBLEM="Docker Desktop is not running (docker: ${line#ERROR: })"
      DOCKER_FIX="start it: open -a Docker (or Docker in Launchpad), wait until its menu-bar whale stops moving, then run this again"
    elif [ -n "$line" ]; then
      DOCKER_PROBLEM="the Docker daemon is not running (docker: ${line#ERROR: })"
      DOCKER_FIX="start it: sudo systemctl start docker (and be in the docker group), then run this again"
    else
      DOCKER_PROBLEM="docker info failed: $(grep -v '^[[:space:]]*$' <<<"$err" | tail -n 1)"
      DOCKER_FIX="check that Docker runs and that you may use it (docker info)"
    fi
    return 1
  fi
  if ! "$DOCKER" compose version >/dev/null 2>&1; then
    DOCKER_PROBLEM="'docker compose' (v2) is not available"
    DOCKER_FIX="install the docker compose plugin (Docker Desktop has it)"
    return 1
  fi
}
need_docker() { docker_check || die "$DOCKER_PROBLEM" "$DOCKER_FIX"; }

# compose ARGS...: docker compose with this compose file. Commands other than up need the
# variables the file requires; their values do not matter there.
compose() {
  NLB_DNS=${NLB_DNS:-unused} FS_ID=${FS_ID:-unused} AWS_REGION=${AWS_REGION:-unused} \
    S3FILES_PASSWORD_FILE=${S3FILES_PASSWORD_FILE:-$PASSWORD_FILE} \
    "$DOCKER" compose -f "$COMPOSE_FILE" "$@"
}

# ---- private files ----------------------------------------------------------------------
# private_dir DIR: DIR exists, is a real directory of this user, mode 0700.
private_dir() {
  (umask 077 && mkdir -p "$1") || die "cannot create $1" "check the permissions of $(dirname "$1")"
  { [ ! -L "$1" ] && [ -d "$1" ] && [ -O "$1" ]; } ||
    die "$1 is not a directory of yours (a symbolic link, or another user's)" "remove it; $0 makes it again"
  chmod 700 "$1"
}

# ensure_password: PASSWORD_FILE holds a random password (made on first use), mode 0600.
ensure_password() {
  private_dir "$CONFIG_DIR"
  [ ! -L "$PASSWORD_FILE" ] || die "$PASSWORD_FILE is a symbolic link" "remove it; $0 makes a new password"
  if [ ! -s "$PASSWORD_FILE" ]; then
    # 24 random bytes as 48 hex digits (od reads exactly 24 bytes: no SIGPIPE).
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$PASSWORD_FILE.new" &&
      echo >>"$PASSWORD_FILE.new" && mv -f "$PASSWORD_FILE.new" "$PASSWORD_FILE") ||
      die "cannot write $PASSWORD_FILE" "check the permissions of $CONFIG_DIR"
    say "made a random WebDAV password in $PASSWORD_FILE (mode 0600; user $DAV_USER)"
  fi
  chmod 600 "$PASSWORD_FILE"
}

# aws_dir: ~/.aws, or, when there is none, an empty private directory (so that Docker does not
# create ~/.aws as root, and no other user can plant a configuration there).
aws_dir() {
  local dir=${AWS_CONFIG_DIR:-$HOME/.aws}
  if [ ! -d "$dir" ]; then
    dir=$CONFIG_DIR/no-aws-config
    private_dir "$CONFIG_DIR"
    private_dir "$dir"
  fi
  AWS_DIR=$dir
}

# ---- infra stack outputs --------------------------------------------------------------
STACK_OUTPUTS=''
stack_outputs_loaded=0
# load_outputs: "Key<TAB>Value" lines from cdk-outputs.json, else from CloudFormation.
load_outputs() {
  [ "$stack_outputs_loaded" = 0 ] || return 0
  stack_outputs_loaded=1
  if [ -f "$OUTPUTS" ]; then
    # cdk writes {"Stack": {"Key": "value", ...}}, one key per line.
    STACK_OUTPUTS=$(sed -n 's/^[[:space:]]*"\([A-Za-z0-9]*\)"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1	\2/p' "$OUTPUTS")
    say "stack outputs from $OUTPUTS"
  elif command -v aws >/dev/null 2>&1; then
    if STACK_OUTPUTS=$(aws cloudformation describe-stacks --stack-name "$STACK" \
      ${AWS_REGION:+--region "$AWS_REGION"} \
      --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text 2>/dev/null); then
      say "stack outputs from CloudFormation stack $STACK"
    else
      STACK_OUTPUTS=''
      say "aws cloudformation describe-stacks --stack-name $STACK failed (no stack, region or credentials); give the values as arguments"
    fi
  fi
}
output() { # output KEY: the stack output's value, or nothing
  load_outputs
  # (awk reads to the end: an early exit could fail the pipe under pipefail)
  printf '%s\n' "$STACK_OUTPUTS" | awk -F '\t' -v k="$1" '$1 == k && !found { print $2; found = 1 }'
}

# ---- waiting for the container ------------------------------------------------------------
# entrypoint_diagnosis: the entrypoint's last "error:" line, the "fix:" lines after it, and
# the failed preflight step just before it, if any.
entrypoint_diagnosis() {
  "$DOCKER" logs --tail 200 "$SERVICE" 2>&1 | awk '
    { sub(/^.*entrypoint: /, "entrypoint: ") }
    /^entrypoint: error:/ { n = 0; if (prev ~ /^entrypoint: preflight .* failed: /) line[n++] = prev }
    /^entrypoint: (error|fix):/ { line[n++] = $0 }
    { prev = $0 }
    END { for (i = 0; i < n; i++) print line[i] }'
}

is_starting() { case $1 in created | running) return 0 ;; *) return 1 ;; esac; }

# wait_ready: until the entrypoint says "ready" (in the log of the container's current run);
# dies at once, with the entrypoint's diagnosis, when the container fails at start (an
# "entrypoint: error:" line, a restart, a stopped or unhealthy container), or after READY_WAIT.
wait_ready() {
  local deadline=$((SECONDS + READY_WAIT)) state status restarts started health base='' logs diag
  while :; do
    state=$("$DOCKER" inspect -f '{{.State.Status}} {{.RestartCount}} {{.State.StartedAt}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$SERVICE" 2>/dev/null) ||
      state='missing 0 -'
    read -r status restarts started health <<EOF
$state
EOF
    [ -n "$base" ] || base=$restarts
    logs=$("$DOCKER" logs --since "$started" "$SERVICE" 2>&1 || true)
    # (here-strings, not pipes: grep -q may stop reading early, and pipefail would count that)
    if grep -q 'entrypoint: ready' <<<"$logs"; then
      return 0
    fi
    if grep -q 'entrypoint: error:' <<<"$logs" || [ "$restarts" -gt "$base" ] ||
      [ "${health:-}" = unhealthy ] || ! is_starting "$status"; then
      diag=$(entrypoint_diagnosis)
      [ -n "$diag" ] || diag=$("$DOCKER" logs --tail 40 "$SERVICE" 2>&1 || true)
      say "the container fails at start (state: $status, restarts: $restarts${health:+, health: $health}); the entrypoint said:"
      printf '%s\n' "$diag" | sed 's/^/  /' >&2
      compose stop >/dev/null 2>&1 || true
      die "the container could not mount the file system (the entrypoint's error and fix are above); it is stopped, so that it does not restart forever" \
        "do what the fix line says, then: $0 up ..."
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      "$DOCKER" logs --tail 40 "$SERVICE" >&2 2>&1 || true
      die "the container did not get ready within $READY_WAIT s (its log is above)" "see '$0 status'; after fixing: $0 down && $0 up ..."
    fi
    sleep 1
  done
}

# ---- commands -------------------------------------------------------------------------
cmd_up() {
  local nlb=${NLB_DNS:-} fs=${FS_ID:-} az=${AZ_ID:-} region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}} nlb_arg=''
  while [ $# -gt 0 ]; do
    case $1 in
      --fs-id) fs=${2:?--fs-id needs a value}; shift 2 ;;
      --az-id) az=${2:?--az-id needs a value}; shift 2 ;;
      --region) region=${2:?--region needs a value}; shift 2 ;;
      --fs-id=*) fs=${1#*=}; shift ;;
      --az-id=*) az=${1#*=}; shift ;;
      --region=*) region=${1#*=}; shift ;;
      -h | --help) usage ;;
      -*) die "unknown option $1" "see: $0 --help" ;;
      *)
        [ -z "$nlb_arg" ] || die "more than one NLB_DNS given ($nlb_arg, $1)"
        nlb_arg=$1 nlb=$1
        shift
        ;;
    esac
  done
  [ -n "$nlb" ] || nlb=$(output NlbDns)
  [ -n "$fs" ] || fs=$(output FileSystemId)
  [ -n "$az" ] || az=$(output MountTargetAzId)
  [ -n "$region" ] || region=$(output Region)
  local missing=''
  [ -n "$nlb" ] || missing="$missing NLB_DNS"
  [ -n "$fs" ] || missing="$missing --fs-id"
  [ -n "$region" ] || missing="$missing --region"
  [ -z "$missing" ] || die "missing:$missing" \
    "pass them ($0 up NLB_DNS --fs-id fs-... --region ...), or deploy infra/ with 'npx cdk deploy --outputs-file cdk-outputs.json' so they are read from $OUTPUTS"
  need_docker

  ensure_password
  aws_dir
  if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ] && [ ! -f "$AWS_DIR/credentials" ] && [ ! -f "$AWS_DIR/config" ]; then
    say "warning: no AWS credentials found (AWS_PROFILE, AWS_ACCESS_KEY_ID or ~/.aws): the proxy needs an IAM identity with the stack's client policy (ClientPolicyArn)"
  fi
  export NLB_DNS=$nlb FS_ID=$fs AZ_ID=$az AWS_REGION=$region AWS_CONFIG_DIR=$AWS_DIR WEBDAV_PORT=$PORT \
    WEBDAV_USER=$DAV_USER S3FILES_PASSWORD_FILE=$PASSWORD_FILE
  say "starting: NLB_DNS=$nlb FS_ID=$fs AZ_ID=${az:-(none)} AWS_REGION=$region"
  compose up -d --build

  say "waiting for the mount (up to $READY_WAIT s)"
  wait_ready
  local url=http://127.0.0.1:$PORT/
  say "ready: $fs mounted in the container, WebDAV on $url (user $DAV_USER, password in $PASSWORD_FILE)"
  if is_macos; then
    mac_mount "$url"
  else
    say "open $url with a WebDAV client (Files: dav://127.0.0.1:$PORT/, or: gio mount dav://127.0.0.1:$PORT/), or use $0 ls / cp / shell"
  fi
}

# mount_point: the macOS mount point as `mount` prints it, with symbolic links resolved
# (/tmp/s3files is /private/tmp/s3files there). Only the parent is resolved: a hung WebDAV
# volume is not touched.
mount_point() {
  local parent base
  parent=$(dirname "$MAC_MOUNT")
  base=$(basename "$MAC_MOUNT")
  if parent=$(cd -P "$parent" 2>/dev/null && pwd -P); then
    [ "$parent" != / ] || parent=''
    MOUNT_POINT=$parent/$base
  else
    MOUNT_POINT=$MAC_MOUNT
  fi
}
# is_mounted: MOUNT_POINT is in macOS's mount table ("URL on /private/tmp/s3files (webdav, ...)")
# (grep reads all of mount's output: with -q it could stop early and fail the pipe)
is_mounted() { mount | grep -F " on $MOUNT_POINT (" >/dev/null; }

# be32 N: N as 4 bytes, most significant first
be32() {
  # shellcheck disable=SC2059  # the format is the four octal escapes made here
  printf "\\$(printf %03o $((($1 >> 24) & 255)))\\$(printf %03o $((($1 >> 16) & 255)))\\$(printf %03o $((($1 >> 8) & 255)))\\$(printf %03o $(($1 & 255)))"
}

# mount_credentials FILE: the user and password for `mount_webdav -a FD`. mount_webdav's agent
# (webdavfs_agent) seeks FD to its start, so FD must be a regular file, and reads four fields,
# each a 4-byte big-endian length followed by that many bytes (no terminator): user,
# password, proxy user, proxy password (the last two empty here); each length must be below
# 256. It then overwrites the file with zeros and closes it. The password never appears on a
# command line.
mount_credentials() {
  local password
  IFS= read -r password <"$PASSWORD_FILE" || true
  [ -n "$password" ] || die "$PASSWORD_FILE is empty" "remove it; $0 up makes a new password"
  {
    be32 ${#DAV_USER}
    printf '%s' "$DAV_USER"
    be32 ${#password}
    printf '%s' "$password"
    be32 0
    be32 0
  } >"$1"
}

mac_mount() {
  local url=$1 tmp rc=0
  mkdir -p "$MAC_MOUNT" || die "cannot create $MAC_MOUNT" "set S3FILES_MOUNT to a directory you may create"
  mount_point
  if is_mounted; then
    say "$MAC_MOUNT is already mounted"
    return 0
  fi
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/s3files-mount.XXXXXX") # mode 0700
  mount_credentials "$tmp/credentials"
  mount_webdav -v s3files -a 3 "$url" "$MAC_MOUNT" 3<>"$tmp/credentials" || rc=$?
  rm -rf "$tmp"
  if [ "$rc" != 0 ]; then
    local why="mount_webdav $url $MAC_MOUNT failed (exit status $rc)"
    case $rc in
      16) why="$why: that URL is already mounted elsewhere (mount | grep webdav)" ;;
      19) why="$why: the WebDAV server did not answer" ;;
      89) why="$why: the server refused user $DAV_USER and the password" ;;
    esac
    die "$why" "check '$0 status'; or in Finder: Go > Connect to Server > $url, user $DAV_USER, password: the first line of $PASSWORD_FILE"
  fi
  say "mounted at $MAC_MOUNT (Finder shows it as 's3files')"
  if [ "$(defaults read com.apple.desktopservices DSDontWriteNetworkStores 2>/dev/null || true)" != 1 ]; then
    say "advice: keep Finder from writing .DS_Store files to network volumes (this server already keeps them and ._* files out of the bucket, in memory):"
    say "  defaults write com.apple.desktopservices DSDontWriteNetworkStores -bool true   (then log out and in)"
  fi
}

cmd_down() {
  if is_macos; then
    mount_point
    if is_mounted; then
      umount "$MOUNT_POINT" 2>/dev/null || diskutil unmount force "$MOUNT_POINT" >/dev/null ||
        die "cannot unmount $MOUNT_POINT" "close the files open there (lsof +D $MOUNT_POINT) and retry"
      say "unmounted $MOUNT_POINT"
    fi
  fi
  need_docker
  compose down
}

# compose_exec ARGS...: run in the running container (stdin passed through)
compose_exec() {
  need_docker
  compose exec "$@"
}

# remote PATH: sets REMOTE to the container path of a file system path (":" prefix removed,
# no ".."). Not through $(...): its die must end the script.
remote() {
  local p=${1#:}
  case /$p/ in */../*) die "'..' is not allowed in $1" "give the path from the file system's root, e.g. :/reports/x" ;; esac
  p=${p#/}
  REMOTE=$REMOTE_ROOT/$p
}

cmd_ls() {
  [ $# -le 1 ] || die "usage: $0 ls [PATH]"
  remote "${1:-/}"
  compose_exec -T "$SERVICE" ls -la -- "$REMOTE"
}

cmd_cp() {
  [ $# -eq 2 ] || die "usage: $0 cp SRC DST (the file system side is written :PATH)"
  local src=$1 dst=$2
  case "$src:$dst" in
    :*::*) die "both sides are in the file system" "use: $0 shell, then cp there" ;;
    :*)
      # out of the file system: a tar stream keeps directories and names intact
      remote "$src"
      if [ -d "$dst" ]; then
        compose_exec -T "$SERVICE" tar -C "$(dirname "$REMOTE")" -cf - -- "$(basename "$REMOTE")" | tar -C "$dst" -xf -
      else
        compose_exec -T "$SERVICE" cat -- "$REMOTE" >"$dst"
      fi
      ;;
    *::*)
      [ -e "$src" ] || die "$src does not exist"
      remote "$dst"
      if [ -d "$src" ] || [ "${dst%/}" != "$dst" ]; then
        # into a directory of the file system; COPYFILE_DISABLE: macOS's tar adds no ._* files
        COPYFILE_DISABLE=1 tar -C "$(dirname "$src")" -cf - -- "$(basename "$src")" |
          compose_exec -T "$SERVICE" tar -C "$REMOTE" -xf -
      else
        # shellcheck disable=SC2016  # $1 expands in the container's shell, on purpose
        compose_exec -T "$SERVICE" sh -c 'cat > "$1"' sh "$REMOTE" <"$src"
      fi
      ;;
    *) die "one side must be in the file system, written :PATH" "e.g. $0 cp report.pdf :/reports/" ;;
  esac
  say "copied $src -> $dst"
}

cmd_status() {
  local running health
  if docker_check; then
    running=$("$DOCKER" inspect -f '{{.State.Status}}' "$SERVICE" 2>/dev/null || echo "not created")
    health=$("$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$SERVICE" 2>/dev/null || true)
    echo "container: $running${health:+ ($health)}"
    if [ "$running" = running ]; then
      compose exec -T "$SERVICE" /usr/local/bin/entrypoint.sh health || true
      compose exec -T "$SERVICE" sh -c "grep ' $REMOTE_ROOT ' /proc/mounts || echo 'not mounted'"
    fi
  else
    echo "docker: $DOCKER_PROBLEM (fix: $DOCKER_FIX)"
  fi
  if command -v curl >/dev/null 2>&1; then
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS "http://127.0.0.1:$PORT/" || true)
    case $code in
      401) code="401 (up; it asks for the password)" ;;
      '' | 000) code="nothing (not reachable)" ;;
    esac
    echo "webdav: http://127.0.0.1:$PORT/ answers OPTIONS with $code"
  fi
  if is_macos; then
    mount_point
    if is_mounted; then echo "macOS: mounted at $MOUNT_POINT"; else echo "macOS: $MOUNT_POINT not mounted"; fi
  fi
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  up) cmd_up "$@" ;;
  down) [ $# -eq 0 ] || die "usage: $0 down"; cmd_down ;;
  shell) [ $# -eq 0 ] || die "usage: $0 shell"; compose_exec "$SERVICE" bash ;;
  ls) cmd_ls "$@" ;;
  cp) cmd_cp "$@" ;;
  status) [ $# -eq 0 ] || die "usage: $0 status"; cmd_status ;;
  -h | --help | help) usage ;;
  *) die "unknown command '$cmd'" "commands: up, down, shell, ls, cp, status ($0 --help)" ;;
esac
