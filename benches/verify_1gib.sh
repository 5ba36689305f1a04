#!/usr/bin/env bash
# Verification throughput on a 1 GiB bundle: `qasid verify` against `openssl dgst -sha256` on the
# same zip (the floor: verifying must hash every byte at least once), best of 3 runs each, with
# peak RSS from /usr/bin/time -v.
#
# Usage: benches/verify_1gib.sh [WORKDIR]
#   WORKDIR needs about 2.1 GiB free; default: a temporary folder, removed afterwards.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time for peak RSS measurements" >&2
    apt-get install -y -qq time >/dev/null
fi

cargo build --release --quiet --bin qasid
qasid="${CARGO_TARGET_DIR:-target}/release/qasid"

if [ $# -ge 1 ]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi

src="$work/article-1gib"
mkdir -p "$src"
printf -- '---\ntitle: Benchmark article\nauthor: qasid bench\ndate: 2026-01-01\nlanguage: en\n---\n\nOne big stored file.\n' \
    >"$src/article.md"
if [ ! -s "$src/video.bin" ]; then
    head -c $((1 << 30)) /dev/urandom >"$src/video.bin"
fi
rm -rf "$work/keys"
"$qasid" keygen --unencrypted --out "$work/keys" >/dev/null
"$qasid" bundle "$src" --key "$work/keys/publisher.key" --out "$work/bench.zip" >/dev/null
size=$(stat -c %s "$work/bench.zip")

# measure COMMAND...: sets best (seconds, best of 3 runs) and peak (max RSS, KiB); fails if the
# command fails.
measure() {
    best="" peak=0
    local report="$work/time.txt" secs rss
    for _ in 1 2 3; do
        if ! /usr/bin/time -v -o "$report" "$@" >/dev/null; then
            echo "failed: $*" >&2
            exit 1
        fi
        secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {
            n = split($2, p, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + p[i]
            print s }' "$report")
        rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$report")
        if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best="$secs"
        fi
        if [ "$rss" -gt "$peak" ]; then peak="$rss"; fi
    done
}

cat "$work/bench.zip" >/dev/null # warm the page cache for both
measure openssl dgst -sha256 "$work/bench.zip"
ossl_s=$best ossl_rss=$peak
measure sha256sum "$work/bench.zip"
sum_s=$best sum_rss=$peak
measure "$qasid" verify "$work/bench.zip" --publisher "$work/keys/publisher.pub"
qasid_s=$best qasid_rss=$peak

awk -v size="$size" -v os="$ossl_s" -v orss="$ossl_rss" -v ss="$sum_s" -v srss="$sum_rss" \
    -v qs="$qasid_s" -v qrss="$qasid_rss" 'BEGIN {
    printf "bundle size:      %d bytes\n", size
    printf "openssl sha256:   %6.2f s  %7.1f MB/s  peak RSS %6.1f MiB\n", os, size / 1e6 / os, orss / 1024
    printf "sha256sum:        %6.2f s  %7.1f MB/s  peak RSS %6.1f MiB\n", ss, size / 1e6 / ss, srss / 1024
    printf "qasid verify:     %6.2f s  %7.1f MB/s  peak RSS %6.1f MiB\n", qs, size / 1e6 / qs, qrss / 1024
    printf "ratio qasid/openssl time: %.2f\n", qs / os
    printf "RESULT | verify 1 GiB stored bundle: throughput vs openssl dgst -sha256 | %.2fx | target >= 0.9x | %s\n", os / qs, (os / qs >= 0.9) ? "PASS" : "FAIL"
    printf "RESULT | verify 1 GiB stored bundle: throughput vs sha256sum | %.2fx | reference only | -\n", ss / qs
    printf "RESULT | verify 1 GiB: peak RSS | %.1f MiB | target < 32 MiB | %s\n", qrss / 1024, (qrss / 1024 < 32) ? "PASS" : "FAIL"
}'
