#!/usr/bin/env bash
# Offline checks of the CDK app under infra/ (no AWS account, no credentials):
#   1. npm ci            (only when node_modules is missing or older than package-lock.json)
#   2. tsc --noEmit      (type check)
#   3. node --test       (aws-cdk-lib/assertions tests, via tsx, CDK_VALIDATION=false)
#   4. cdk synth         (the real CLI, into a temp dir, without network where unshare allows it)
#   5. cfn-lint          (pinned, in infra/.venv) on the synthesized templates
# Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

CFN_LINT_VERSION=1.58.0
LINT_REGION=ca-central-1
export CDK_DISABLE_CLI_TELEMETRY=true
export CDK_DISABLE_VERSION_CHECK=true
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

step() { printf '\n==> %s\n' "$*"; }

# ---- 1. dependencies ---------------------------------------------------------
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.infra-lock-sha256
if [[ ! -d node_modules || ! -f $stamp || $(cat "$stamp") != "$lock_sum" ]]; then
  step "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" > "$stamp"
fi

# ---- 2. type check -----------------------------------------------------------
step "tsc --noEmit"
npx --no-install tsc --noEmit -p .

# ---- 3. unit tests -----------------------------------------------------------
step "node --test (tsx)"
CDK_VALIDATION=false node --import tsx --test test/*.test.ts

# ---- 4. synthesize with the CDK CLI, offline ----------------------------------
out=$(mktemp -d "${TMPDIR:-/tmp}/infra-synth.XXXXXX")
trap 'rm -rf "$out"' EXIT

# Run without any network interface when we may (root or user namespaces):
# proves the synth needs no AWS and no CLI phone-home.
offline=()
if unshare -n true 2>/dev/null; then
  offline=(unshare -n)
elif unshare -rn true 2>/dev/null; then
  offline=(unshare -rn)
else
  echo "note: unshare unavailable; synthesizing with the network present" >&2
fi

synth() { # outdir, extra -c args...
  local dir=$1; shift
  "${offline[@]}" npx --no-install cdk synth --no-notices -q -o "$dir" \
    -c region="$LINT_REGION" -c allowedCidr=203.0.113.0/24 "$@"
  test -s "$dir/EfsProxyS3Files.template.json"
}

step "cdk synth (default: public subnet)"
synth "$out/default"
step "cdk synth (privateSubnets=true)"
synth "$out/private" -c privateSubnets=true

step "cdk synth without allowedCidr must fail"
if "${offline[@]}" npx --no-install cdk synth --no-notices -q -o "$out/missing" -c region="$LINT_REGION" \
    >"$out/missing.log" 2>&1; then
  echo "FAIL: synth without allowedCidr succeeded" >&2
  exit 1
fi
grep -q 'missing required context parameter "allowedCidr"' "$out/missing.log" || {
  echo "FAIL: synth without allowedCidr did not explain why:" >&2
  cat "$out/missing.log" >&2
  exit 1
}
echo "ok: refused with a clear message"

# ---- 5. cfn-lint ---------------------------------------------------------------
cfn_lint=.venv/bin/cfn-lint
if [[ ! -x $cfn_lint ]] || [[ $("$cfn_lint" --version 2>/dev/null) != "cfn-lint $CFN_LINT_VERSION" ]]; then
  step "pip install cfn-lint==$CFN_LINT_VERSION (into infra/.venv)"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi

step "cfn-lint $CFN_LINT_VERSION"
# Exit codes: 0 clean, 2 errors, 4 warnings, 8 informational; all but 0 fail here.
"$cfn_lint" --regions "$LINT_REGION" -- "$out/default/EfsProxyS3Files.template.json" "$out/private/EfsProxyS3Files.template.json"
echo "ok: cfn-lint clean on 2 templates"

echo
echo "infra: all checks passed"
