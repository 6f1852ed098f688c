#!/usr/bin/env bash
# One host command for the efs-proxy container (container/docker-compose.yml): an Amazon S3
# Files (or EFS) file system mounted inside the container over NFSv4.2 through efs-proxy, and
# published to this machine over WebDAV on 127.0.0.1.
#
#   docker-mount.sh up [NLB_DNS] [--fs-id ID] [--az-id AZ_ID] [--region REGION]
#       builds and starts the container, waits until it has mounted; on macOS mounts the
#       WebDAV volume at /tmp/s3files (mount_webdav), on Linux prints the URL.
#       Missing values come from the environment (NLB_DNS, FS_ID, AZ_ID, AWS_REGION), then
#       from the infra stack's outputs: infra/cdk-outputs.json (`cdk deploy --outputs-file
#       cdk-outputs.json`), else `aws cloudformation describe-stacks` if the aws CLI exists.
#   docker-mount.sh down              unmounts (macOS) and stops the container
#   docker-mount.sh shell             a shell in the container (the mount is /mnt/s3files)
#   docker-mount.sh ls [PATH]         lists PATH in the file system (default: its root)
#   docker-mount.sh cp SRC DST        copies a file or directory in or out; the file system
#                                     side is written :PATH (cp report.pdf :/reports/,
#                                     cp :/reports/report.pdf .)
#   docker-mount.sh status            container, health, mount and WebDAV state
#
# env: STACK_NAME (default EfsProxyS3Files), CDK_OUTPUTS (default infra/cdk-outputs.json),
#      WEBDAV_PORT (default 8080), S3FILES_MOUNT (macOS mount point, default /tmp/s3files),
#      AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/...; ~/.aws is mounted read-only),
#      WEBDAV_USER/WEBDAV_PASSWORD (optional basic auth), DOCKER (default docker).
# Runs with macOS's bash 3.2 too.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COMPOSE_FILE=$HERE/docker-compose.yml
SERVICE=s3files
STACK=${STACK_NAME:-EfsProxyS3Files}
OUTPUTS=${CDK_OUTPUTS:-$ROOT/infra/cdk-outputs.json}
PORT=${WEBDAV_PORT:-8080}
MAC_MOUNT=${S3FILES_MOUNT:-/tmp/s3files}
DOCKER=${DOCKER:-docker}
REMOTE_ROOT=/mnt/s3files

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

need_docker() {
  command -v "$DOCKER" >/dev/null 2>&1 ||
    die "docker not found" "install Docker Desktop (macOS) or docker-ce with the compose plugin (Linux)"
  "$DOCKER" compose version >/dev/null 2>&1 ||
    die "'docker compose' (v2) is not available" "install the docker compose plugin (Docker Desktop has it)"
}
compose() { "$DOCKER" compose -f "$COMPOSE_FILE" "$@"; }
is_macos() { [ "$(uname -s)" = Darwin ]; }

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
  printf '%s\n' "$STACK_OUTPUTS" | awk -F '\t' -v k="$1" '$1 == k { print $2; exit }'
}

# ---- commands -------------------------------------------------------------------------
cmd_up() {
  local nlb=${NLB_DNS:-} fs=${FS_ID:-} az=${AZ_ID:-} region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
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
        [ -z "${nlb_arg:-}" ] || die "more than one NLB_DNS given ($nlb_arg, $1)"
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

  local aws_dir=${AWS_CONFIG_DIR:-$HOME/.aws}
  if [ ! -d "$aws_dir" ]; then
    # An empty directory, so that Docker does not create ~/.aws as root.
    aws_dir=${TMPDIR:-/tmp}/s3files-no-aws-config
    mkdir -p "$aws_dir"
  fi
  if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ] && [ ! -f "$aws_dir/credentials" ] && [ ! -f "$aws_dir/config" ]; then
    say "warning: no AWS credentials found (AWS_PROFILE, AWS_ACCESS_KEY_ID or ~/.aws): the proxy needs an IAM identity with the stack's client policy (ClientPolicyArn)"
  fi
  export NLB_DNS=$nlb FS_ID=$fs AZ_ID=$az AWS_REGION=$region AWS_CONFIG_DIR=$aws_dir WEBDAV_PORT=$PORT
  say "starting: NLB_DNS=$nlb FS_ID=$fs AZ_ID=${az:-(none)} AWS_REGION=$region"
  compose up -d --build

  say "waiting for the mount (up to 180 s)"
  local deadline=$((SECONDS + 180)) running
  until compose logs --no-color "$SERVICE" 2>/dev/null | grep -q 'entrypoint: ready'; do
    running=$("$DOCKER" inspect -f '{{.State.Running}}' "$SERVICE" 2>/dev/null || echo false)
    if [ "$running" != true ] || [ "$SECONDS" -ge "$deadline" ]; then
      compose logs --no-color --tail 40 "$SERVICE" >&2 || true
      die "the container did not get ready (its log is above; the 'entrypoint: fix:' lines name the likely cause)" \
        "after fixing: $0 down && $0 up ..."
    fi
    sleep 2
  done
  local url=http://127.0.0.1:$PORT/
  say "ready: $fs mounted in the container, WebDAV on $url"
  if is_macos; then
    mac_mount "$url"
  else
    say "open $url with a WebDAV client (Files: dav://127.0.0.1:$PORT/, or: gio mount dav://127.0.0.1:$PORT/), or use $0 ls / cp / shell"
  fi
}

mac_mount() {
  local url=$1
  if mount | grep -q " on $MAC_MOUNT "; then
    say "$MAC_MOUNT is already mounted"
    return 0
  fi
  mkdir -p "$MAC_MOUNT"
  local opts=(-v s3files)
  # With basic auth, mount_webdav asks for the user and password.
  [ -z "${WEBDAV_USER:-}" ] || opts+=(-i)
  mount_webdav "${opts[@]}" "$url" "$MAC_MOUNT" ||
    die "mount_webdav $url $MAC_MOUNT failed" "check '$0 status'; Finder: Go > Connect to Server > $url"
  say "mounted at $MAC_MOUNT (Finder shows it as 's3files')"
  if [ "$(defaults read com.apple.desktopservices DSDontWriteNetworkStores 2>/dev/null || true)" != 1 ]; then
    say "advice: keep Finder from writing .DS_Store files to network volumes (this server already keeps them and ._* files out of the bucket, in memory):"
    say "  defaults write com.apple.desktopservices DSDontWriteNetworkStores -bool true   (then log out and in)"
  fi
}

cmd_down() {
  if is_macos && mount | grep -q " on $MAC_MOUNT "; then
    umount "$MAC_MOUNT" 2>/dev/null || diskutil unmount force "$MAC_MOUNT" >/dev/null ||
      die "cannot unmount $MAC_MOUNT" "close the files open there (lsof +D $MAC_MOUNT) and retry"
    say "unmounted $MAC_MOUNT"
  fi
  need_docker
  # down needs the variables the compose file requires; their values do not matter here.
  NLB_DNS=${NLB_DNS:-unused} FS_ID=${FS_ID:-unused} AWS_REGION=${AWS_REGION:-unused} compose down
}

# compose_exec ARGS...: run in the running container (stdin passed through)
compose_exec() {
  need_docker
  NLB_DNS=${NLB_DNS:-unused} FS_ID=${FS_ID:-unused} AWS_REGION=${AWS_REGION:-unused} \
    compose exec "$@"
}

# remote PATH: the container path of a file system path (":" prefix removed, no "..")
remote() {
  local p=${1#:}
  case /$p/ in */../*) die "'..' is not allowed in $1" ;; esac
  p=${p#/}
  printf '%s/%s' "$REMOTE_ROOT" "$p"
}

cmd_ls() {
  [ $# -le 1 ] || die "usage: $0 ls [PATH]"
  compose_exec -T "$SERVICE" ls -la -- "$(remote "${1:-/}")"
}

cmd_cp() {
  [ $# -eq 2 ] || die "usage: $0 cp SRC DST (the file system side is written :PATH)"
  local src=$1 dst=$2
  case "$src:$dst" in
    :*::*) die "both sides are in the file system" "use: $0 shell, then cp there" ;;
    :*)
      # out of the file system: a tar stream keeps directories and names intact
      local r
      r=$(remote "$src")
      if [ -d "$dst" ]; then
        compose_exec -T "$SERVICE" tar -C "$(dirname "$r")" -cf - -- "$(basename "$r")" | tar -C "$dst" -xf -
      else
        compose_exec -T "$SERVICE" cat -- "$r" >"$dst"
      fi
      ;;
    *::*)
      [ -e "$src" ] || die "$src does not exist"
      local r
      r=$(remote "$dst")
      if [ -d "$src" ] || [ "${dst%/}" != "$dst" ]; then
        # into a directory of the file system
        tar -C "$(dirname "$src")" -cf - -- "$(basename "$src")" |
          compose_exec -T "$SERVICE" tar -C "$r" -xf -
      else
        # shellcheck disable=SC2016  # $1 expands in the container's shell, on purpose
        compose_exec -T "$SERVICE" sh -c 'cat > "$1"' sh "$r" <"$src"
      fi
      ;;
    *) die "one side must be in the file system, written :PATH" "e.g. $0 cp report.pdf :/reports/" ;;
  esac
  say "copied $src -> $dst"
}

cmd_status() {
  need_docker
  local running health
  running=$("$DOCKER" inspect -f '{{.State.Status}}' "$SERVICE" 2>/dev/null || echo "not created")
  health=$("$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$SERVICE" 2>/dev/null || true)
  echo "container: $running${health:+ ($health)}"
  if [ "$running" = running ]; then
    compose_exec -T "$SERVICE" /usr/local/bin/entrypoint.sh health || true
    compose_exec -T "$SERVICE" sh -c "grep ' $REMOTE_ROOT ' /proc/mounts || echo 'not mounted'"
  fi
  if command -v curl >/dev/null 2>&1; then
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS "http://127.0.0.1:$PORT/" || true)
    echo "webdav: http://127.0.0.1:$PORT/ answers OPTIONS with ${code:-nothing}"
  fi
  if is_macos; then
    if mount | grep -q " on $MAC_MOUNT "; then echo "macOS: mounted at $MAC_MOUNT"; else echo "macOS: $MAC_MOUNT not mounted"; fi
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
