#!/usr/bin/env bash
# Builds every fuzz target (cargo +nightly fuzz build, AddressSanitizer, debug assertions) and
# runs each one for SECONDS (default 30), one at a time, from its committed seeds
# (fuzz/seeds/<target>/), its crash regressions (fuzz/regressions/<target>/) and the working
# corpus (fuzz/corpus/<target>/, kept between runs). Fails if any target crashes, panics,
# times out or runs out of memory; the input is saved under fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# env: FUZZ_TARGET_DIR (build directory, default fuzz/target), FUZZ_CORPUS_DIR (default
# fuzz/corpus), FUZZ_ARTIFACTS_DIR (default fuzz/artifacts), FUZZ_NICE (nice level, default
# 19), FUZZ_SANITIZER (address | none, default address), FUZZ_SUMMARY (append one line per
# target to this file).
set -euo pipefail
FUZZ=$(cd "$(dirname "$0")" && pwd)
cd "$FUZZ"

seconds=${1:-30}
shift || true
target_dir=${FUZZ_TARGET_DIR:-$FUZZ/target}
corpus_root=${FUZZ_CORPUS_DIR:-$FUZZ/corpus}
artifacts_root=${FUZZ_ARTIFACTS_DIR:-$FUZZ/artifacts}
sanitizer=${FUZZ_SANITIZER:-address}
nice_level=${FUZZ_NICE:-19}
# xdr-codec's errors (error-chain) capture a symbolized backtrace each when RUST_BACKTRACE is
# set: 80 times slower on the decoders' error paths. A crash still prints the sanitizer's stack.
export RUST_BACKTRACE=0

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

t0=$SECONDS
nice -n "$nice_level" cargo +nightly fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
echo "fuzz build: $((SECONDS - t0)) s"
bin_dir=$target_dir/x86_64-unknown-linux-gnu/release

dict_of() {
  case "$1" in
    record_stream | rpc_message | bind_response | forward | forward_group) echo dict/xdr.dict ;;
    dropin_config) echo dict/dropin.dict ;;
    pem_load) echo dict/pem.dict ;;
    cert_extensions | check_certificates) echo dict/cert.dict ;;
  esac
}

# Inputs up to this size: whole PEM chains and config files fit, RPC messages are far smaller.
max_len_of() {
  case "$1" in
    pem_load | dropin_config) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

failed=()
for target in "${targets[@]}"; do
  corpus=$corpus_root/$target
  artifacts=$artifacts_root/$target
  mkdir -p "$corpus" "$artifacts"
  inputs=("$corpus" "seeds/$target")
  if [ -d "regressions/$target" ]; then
    inputs+=("regressions/$target")
  fi
  options=(
    "-max_total_time=$seconds"
    "-max_len=$(max_len_of "$target")"
    -timeout=10
    -rss_limit_mb=2048
    -print_final_stats=1
    "-artifact_prefix=$artifacts/"
  )
  dict=$(dict_of "$target")
  if [ -n "$dict" ]; then
    options+=("-dict=$dict")
  fi
  log=$artifacts/last-run.log
  printf '\n######## fuzz %s for %s s\n' "$target" "$seconds"
  started=$SECONDS
  if nice -n "$nice_level" "$bin_dir/$target" "${options[@]}" "${inputs[@]}" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
    tail -n 60 "$log"
    echo "reproduce: $bin_dir/$target $artifacts/<crash-file>  (or: cd fuzz && cargo +nightly fuzz run $target <file>)"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  line="$target: $status in $((SECONDS - started)) s, ${execs:-?} execs (${speed:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
  echo "$line"
  if [ -n "${FUZZ_SUMMARY:-}" ]; then
    echo "$line" >>"$FUZZ_SUMMARY"
  fi
done

echo
echo "fuzzing: ${#targets[@]} targets in $((SECONDS - t0)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]} (inputs under $artifacts_root/<target>/)" >&2
  exit 1
fi
