#!/usr/bin/env bash
# Runs every qasid fuzz target (or the ones named) for a bounded time each and prints a summary:
# executions, executions per second, corpus size and crashes per target. Exits 1 if any target
# crashed (the inputs are in fuzz/artifacts/<target>/), 2 on a usage or build error.
#
#   fuzz/run.sh [--merge] [--jobs N] [SECONDS] [TARGET...]
#
#   SECONDS   time per target (default 60), libFuzzer's -max_total_time
#   --jobs N  run N targets at a time (default 1; 2 suits a 2-core machine)
#   --merge   afterwards, add inputs that reach new coverage to the checked-in seeds/<target>/
#
# Environment: SANITIZER (address, the default, or none: faster, still catches every panic,
# overflow, timeout and out-of-memory), QASID_FUZZ_TMP (where targets put their temp files;
# default a fresh folder on /dev/shm, so the push target's store and fsyncs stay in memory).
#
# Each run uses -rss_limit_mb=2048 and -timeout=10. The working corpus accumulates in
# fuzz/corpus/<target>/ between runs (not checked in); seeds/<target>/ is read every run.
# libFuzzer stops a target at its first crash, so "crashes" is 0 or 1 per target per run.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

all_targets=(fuzz_bundle_verify fuzz_manifest fuzz_index_head fuzz_index_piece fuzz_keys
  fuzz_config fuzz_push_body fuzz_front_matter fuzz_note fuzz_root)
seconds=60
jobs=1
merge=0
targets=()
while (($#)); do
  case "$1" in
    --merge) merge=1 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift ;;
    --jobs=*) jobs="${1#--jobs=}" ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) seconds="$1" ;;
    fuzz_*) targets+=("$1") ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((${#targets[@]})) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "run.sh: no target $t" >&2; exit 2; }
done

command -v cargo-fuzz >/dev/null || {
  echo "run.sh: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 2
}
sanitizer="${SANITIZER:-address}"
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov); on a stable toolchain
# RUSTC_BOOTSTRAP lets it use them.
export RUSTC_BOOTSTRAP=1
echo "== building fuzz targets (sanitizer: $sanitizer)"
nice -n 10 cargo fuzz build -s "$sanitizer" || { echo "run.sh: build failed" >&2; exit 2; }
bin="$here/target/x86_64-unknown-linux-gnu/release"

if [[ -n "${QASID_FUZZ_TMP:-}" ]]; then
  tmp="$QASID_FUZZ_TMP"
  mkdir -p "$tmp"
else
  base=/dev/shm
  [[ -d $base && -w $base ]] || base="${TMPDIR:-/tmp}"
  tmp="$(mktemp -d "$base/qasid-fuzz.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
fi
logs="$here/logs"
mkdir -p "$logs"

# The libFuzzer dictionaries (dicts/) of each target: tokens of its input format, and numbers
# and characters at the edges the parsers check, which random mutation rarely produces.
dicts_of() {
  case "$1" in
    fuzz_bundle_verify | fuzz_push_body) echo zip json ;;
    fuzz_manifest | fuzz_index_head | fuzz_index_piece | fuzz_root) echo json ;;
    fuzz_note) echo keys ;;
    fuzz_keys) echo keys ;;
    fuzz_config) echo config ;;
    fuzz_front_matter) echo front_matter ;;
  esac
}

run_one() {
  local t="$1" d dict="$tmp/$1.dict"
  mkdir -p "corpus/$t" "artifacts/$t" "$tmp/$t"
  : >"$dict"
  for d in $(dicts_of "$t"); do cat "dicts/$d.dict" >>"$dict"; done
  # Exit status is read from the log; a crash must not stop the other targets.
  TMPDIR="$tmp/$t" nice -n 10 "$bin/$t" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -dict="$dict" -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" \
    >"$logs/$t.log" 2>&1 || true
}

echo "== running ${#targets[@]} target(s), $seconds s each, $jobs at a time (logs in fuzz/logs/)"
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

crashed=0
printf '\n%-20s %12s %9s %8s %8s\n' target executions exec/s corpus crashes
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  corpus="$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  crashes="$(grep -c 'Test unit written to' "$log" || true)"
  printf '%-20s %12s %9s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "${corpus:-?}" "$crashes"
  if ((crashes > 0)); then
    crashed=1
    grep 'Test unit written to' "$log" | sed 's/.*Test unit written to /    /'
  elif [[ -z "$execs" ]]; then
    echo "    no statistics: see $log"
    crashed=1
  fi
  if ((merge)); then
    "$bin/$t" -merge=1 -rss_limit_mb=2048 -timeout=10 "seeds/$t" "corpus/$t" \
      >"$logs/$t.merge.log" 2>&1 || echo "    merge failed: see $logs/$t.merge.log"
  fi
done
exit "$crashed"
