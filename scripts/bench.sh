#!/usr/bin/env bash
# Runs every benchmark of the project in one go and writes BENCHMARKS.md: each figure as a ratio
# against its reference (openssl/sha256sum, nginx, rsync, a direct fetch) measured in the same
# run, with the machine stated (reader_page: Chromium loading the mirror's own page). Installs
# what the benchmarks need (nginx-light, rsync, wrk, curl, bc, time) with apt when missing;
# reader_page also needs web/test/node_modules (`cd web/test && npm ci`); bucket_serve needs
# Garage (scripts/install-garage.sh) and rclone.
#
#   scripts/bench.sh              # everything (about 5-10 minutes; needs ~2.5 GiB of disk)
#   ONLY=reader_race scripts/bench.sh
#
# Each benchmark prints lines "RESULT | what | figure | target | PASS/FAIL/-"; this script
# collects them into the table at the top of BENCHMARKS.md and keeps every script's full output
# below it. It exits non-zero if a benchmark fails to run or a figure misses its target.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in nginx:nginx-light rsync:rsync wrk:wrk curl:curl bc:bc /usr/bin/time:time aria2c:aria2 jq:jq rclone:rclone; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "${tool%%:*}" ] || need+=("${tool#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin qasid

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
benches=(verify_1gib mirror_vs_nginx bucket_serve sync_vs_rsync reader_race reader_page index_scale bucket_push segmented)
status=0
for b in "${benches[@]}"; do
    [ -n "${ONLY:-}" ] && [ "$ONLY" != "$b" ] && continue
    echo "==== $b"
    start=$(date +%s)
    if [ "$b" = index_scale ]; then
        cmd=(cargo bench --quiet --bench index_scale)
    else
        cmd=(bash "benches/$b.sh")
    fi
    if ! "${cmd[@]}" 2>&1 | tee "$logs/$b.log"; then
        echo "RESULT | $b | the benchmark failed to run | - | FAIL" >>"$logs/$b.log"
        status=1
    fi
    echo "---- $b: $(($(date +%s) - start)) s"
done

{
    echo "# Benchmarks"
    echo
    echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Every figure is"
    echo "measured against its reference in the same run, because these machines are shared and"
    echo "noisy: compare the ratios, not the absolute numbers."
    echo
    echo "Machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'),"
    echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM,"
    echo "Linux $(uname -r), $(rustc --version), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| benchmark | measured | target | verdict |"
    echo "|---|---|---|---|"
    cat "$logs"/*.log | grep -a '^RESULT |' | sed 's/^RESULT | /| /; s/$/ |/'
    echo
    for b in "${benches[@]}"; do
        [ -f "$logs/$b.log" ] || continue
        echo "## $b"
        echo
        if [ "$b" = index_scale ]; then
            echo "\`cargo bench --bench index_scale\`"
        else
            echo "\`bash benches/$b.sh\`"
        fi
        echo
        echo '```text'
        grep -av '^RESULT |' "$logs/$b.log" | grep -av $'\r' | tail -n 60
        echo '```'
        echo
    done
} >BENCHMARKS.md
if grep -a '^RESULT |' "$logs"/*.log | grep -q '| FAIL$'; then
    status=1
fi
echo "wrote BENCHMARKS.md"
exit "$status"
