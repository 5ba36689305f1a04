#!/usr/bin/env bash
# Load test: 64 readers downloading from a real `qasid mirror` on loopback while a publisher
# publishes and pushes a new bundle every second and a second mirror syncs from it every second.
# Every download is checked (bundles by the sha256 in their name and their size, index.json by
# its signature and a sequence that never goes down). See docs/FIREWALL-SIM.md ("Load").
#
#   bash scripts/load-test.sh                  # 60 s of load
#   LOAD_SECONDS=20 QASID_BIN=target/debug/qasid LOAD_CLIENT_PROFILE=debug \
#       bash scripts/load-test.sh              # what .ci/run uses (debug builds, a correctness check)
#
# Setup: a key, the seed articles plus 50 bundles from 16 KiB to 2 MiB (sizes spaced evenly on a
# log scale, incompressible contents), published and pushed to mirror A. Mirror B is a second
# `qasid mirror` that syncs from A every second (--upstream A --sync-interval 1s). The readers are
# benches/load_client.rs (64 workers, one connection each). Reports requests, failures,
# corrupted downloads, p50/p99 latency, throughput, and mirror A's peak RSS (VmHWM). Exits 1 on
# any failed or corrupted request, failed push or sync, or if B does not end with A's index.
# Only loopback; every process it starts is stopped, and its temp folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

LOAD_SECONDS="${LOAD_SECONDS:-60}"
WORKERS="${LOAD_WORKERS:-64}"
BUNDLES=50
for tool in jq timeout awk sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || { echo "load-test: $tool not found" >&2; exit 1; }
done

if [ -n "${QASID_BIN:-}" ]; then
    QASID="$(realpath "$QASID_BIN")"
else
    cargo build --release --quiet --locked
    QASID="$PWD/target/release/qasid"
fi
# LOAD_CLIENT_PROFILE=debug builds the client like the tests (CI: no second, optimised build of
# the whole crate just for the check; the figures then describe debug builds).
if [ "${LOAD_CLIENT_PROFILE:-release}" = debug ]; then
    client_build=(cargo build --bench load_client --locked --quiet --message-format=json)
else
    client_build=(cargo bench --bench load_client --no-run --locked --quiet --message-format=json)
fi
CLIENT="$("${client_build[@]}" |
    jq -r 'select(.target.name? == "load_client" and .executable != null) | .executable')"
[ -x "$CLIENT" ] || { echo "load-test: could not build benches/load_client.rs" >&2; exit 1; }

WORK="$(mktemp -d /tmp/qasid-load.XXXXXX)"
PIDS=()
cleanup() {
    local rc=$?
    set +e
    touch "$WORK/stop"
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ "$rc" -ne 0 ]; then
        for i in "$WORK"/*.log; do
            [ -s "$i" ] || continue
            echo "---- last lines of $(basename "$i")" >&2
            tail -n 10 "$i" >&2
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
PUB="$WORK/keys/publisher.pub"
KEY="$WORK/keys/publisher.key"
REPO="$WORK/repo"
mkdir -p "$WORK/bundles" "$WORK/articles"

# make_bundle NAME SIZE: an article with SIZE incompressible bytes, bundled into bundles/NAME.zip.
make_bundle() {
    local dir="$WORK/articles/$1"
    mkdir -p "$dir/files"
    printf -- '---\ntitle: Load test %s\nauthor: Load test\ndate: 2026-11-28\nlanguage: en\n---\n\n# %s\n' \
        "$1" "$1" >"$dir/article.md"
    head -c "$2" /dev/urandom >"$dir/files/data.bin"
    "$QASID" bundle "$dir" --key "$KEY" --name "$1" --out "$WORK/bundles/$1.zip" >/dev/null
}

echo "setup: $BUNDLES bundles of 16 KiB to 2 MiB plus the seeds"
initial=()
for dir in seeds/*/; do
    name="$(basename "$dir")"
    "$QASID" bundle "$dir" --key "$KEY" --out "$WORK/bundles/$name.zip" >/dev/null
    initial+=("$WORK/bundles/$name.zip")
done
for i in $(seq 0 $((BUNDLES - 1))); do
    size=$(awk -v i="$i" -v n="$BUNDLES" 'BEGIN { printf "%d", 16384 * 128 ^ (i / (n - 1)) }')
    make_bundle "load-$i" "$size"
    initial+=("$WORK/bundles/load-$i.zip")
done
"$QASID" publish "${initial[@]}" --repo "$REPO" --key "$KEY" --expires 1d >/dev/null
HEX="$(ls "$REPO/qasid/v1/publishers")"
BUNDLE_DIR="qasid/v1/publishers/$HEX/bundles"

# start_mirror NAME ARGS...: `qasid mirror` on a free loopback port; sets URL_<NAME>.
start_mirror() {
    local name="$1"
    shift
    "$QASID" mirror --listen 127.0.0.1:0 --store "$WORK/store-$name" --publisher "$PUB" "$@" \
        >"$WORK/mirror-$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$name=$!"
    local i addr=""
    for i in $(seq 1 100); do
        addr="$(sed -n 's#^listening on http://\(.*\)$#\1#p' "$WORK/mirror-$name.log")"
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "load-test: mirror $name did not start" >&2; exit 1; }
    eval "URL_$name=http://$addr/"
}
start_mirror A
timeout 60 "$QASID" push --repo "$REPO" --to "$URL_A" >"$WORK/push-initial.log" 2>&1
# Mirror B syncs from A by itself, every second (a store has one writer: the store lock).
start_mirror B --upstream "$URL_A" --sync-interval 1s --connect-timeout 5s --read-timeout 10s

# The readers' list: every pushed bundle as "<path> <size>", replaced atomically.
list_bundles() {
    local f
    for f in "$REPO/$BUNDLE_DIR"/*.zip; do
        echo "$BUNDLE_DIR/$(basename "$f") $(stat -c %s "$f")"
    done >"$WORK/urls.tmp"
    mv "$WORK/urls.tmp" "$WORK/urls"
}
list_bundles

# Publisher: every second a new bundle (16 to 512 KiB), published and pushed to A; the readers'
# list grows only after the push succeeded.
publisher_loop() {
    local n=0 ok=0 bad=0 next size
    next=$(date +%s)
    while [ ! -e "$WORK/stop" ]; do
        n=$((n + 1))
        size=$((16384 * (1 + (n * 7) % 32)))
        if make_bundle "live-$n" "$size" &&
            "$QASID" publish "$WORK/bundles/live-$n.zip" --repo "$REPO" --key "$KEY" --expires 1d >/dev/null &&
            timeout 20 "$QASID" push --repo "$REPO" --to "$URL_A" >>"$WORK/push.log" 2>&1; then
            ok=$((ok + 1))
            list_bundles
        else
            bad=$((bad + 1))
        fi
        echo "$ok $bad" >"$WORK/publisher.count"
        next=$((next + 1))
        while [ "$(date +%s)" -lt "$next" ] && [ ! -e "$WORK/stop" ]; do sleep 0.05; done
    done
}

publisher_loop &
PIDS+=($!)

echo "load: $WORKERS readers for ${LOAD_SECONDS}s against mirror A; publisher pushing every second; mirror B syncing from A every second"
client_rc=0
timeout $((LOAD_SECONDS + 60)) "$CLIENT" --base "$URL_A" --urls "$WORK/urls" --publisher "$PUB" \
    --workers "$WORKERS" --seconds "$LOAD_SECONDS" --json "$WORK/client.json" || client_rc=$?

# Stop the loops (each finishes its current step: bounded by the step's own timeout).
touch "$WORK/stop"
for pid in "${PIDS[@]:2}"; do
    for _ in $(seq 1 700); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
done
read -r PUSH_OK PUSH_BAD <"$WORK/publisher.count"

# After the load: B catches up within 30 s and must hold exactly A's index; A must hold the
# publisher's latest index. B's rounds are counted from its log ("sync round done … failed=N").
index_a="$WORK/store-A/qasid/v1/publishers/$HEX/index.json"
final_sync=failed
for _ in $(seq 1 300); do
    if cmp -s "$index_a" "$WORK/store-B/qasid/v1/publishers/$HEX/index.json"; then
        final_sync=ok
        break
    fi
    sleep 0.1
done
SYNC_OK=$(grep -c 'sync round done.*failed=0 ' "$WORK/mirror-B.log" || true)
SYNC_BAD=$(grep 'sync round done' "$WORK/mirror-B.log" | grep -vc 'failed=0 ' || true)
cmp -s "$REPO/qasid/v1/publishers/$HEX/index.json" "$index_a" && a_current=yes || a_current=no
cmp -s "$index_a" "$WORK/store-B/qasid/v1/publishers/$HEX/index.json" && b_same=yes || b_same=no
entries=$("$QASID" index show --repo "$WORK/store-B" --publisher "$PUB" --state "$WORK/check-state" --json | jq .entries)

hwm() { awk '/^VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"; }
# shellcheck disable=SC2153 # PID_A and PID_B are set by start_mirror
RSS_A="$(hwm "$PID_A")"
RSS_B="$(hwm "$PID_B")"

J="$WORK/client.json"
R='def r: . * 10 | round / 10; ' # jq: one decimal
[ -s "$J" ] || { echo "load-test: the client wrote no summary (exit $client_rc)" >&2; exit 1; }
echo
printf '%-40s %s\n' \
    "duration" "$(jq -r '.seconds | . * 10 | round / 10' "$J") s, $(jq .workers "$J") concurrent readers" \
    "requests (bundles + index.json)" "$(jq -r '"\(.requests) (\(.bundle_requests) + \(.index_requests)), \(.requests_per_second | round)/s, \(.mib_per_second | round) MiB/s"' "$J")" \
    "failed requests" "$(jq .failed "$J")" \
    "corrupted downloads" "$(jq .corrupted "$J")" \
    "index sequence went backwards" "$(jq .index_rollbacks "$J")" \
    "latency p50 / p99 / max (all)" "$(jq -r "$R"'.latency_ms | "\(.p50|r) / \(.p99|r) / \(.max|r) ms"' "$J")" \
    "latency p50 / p99, bundles" "$(jq -r "$R"'.latency_ms | "\(.bundle_p50|r) / \(.bundle_p99|r) ms"' "$J")" \
    "latency p50 / p99, index.json" "$(jq -r "$R"'.latency_ms | "\(.index_p50|r) / \(.index_p99|r) ms"' "$J")" \
    "bundles served at the end" "$(jq .bundles_listed_at_end "$J") (started with $((BUNDLES + 3)))" \
    "publishes pushed (failed)" "$PUSH_OK ($PUSH_BAD)" \
    "mirror B sync rounds (failed)" "$SYNC_OK ($SYNC_BAD); caught up with A after the load: $final_sync" \
    "A holds the latest index / B = A" "$a_current / $b_same ($entries entries)" \
    "mirror A peak RSS (VmHWM)" "$RSS_A" \
    "mirror B peak RSS (VmHWM)" "$RSS_B"
if [ "$client_rc" -ne 0 ] || [ "$PUSH_BAD" -ne 0 ] || [ "$SYNC_BAD" -ne 0 ] ||
    [ "$final_sync" != ok ] || [ "$a_current" != yes ] || [ "$b_same" != yes ] || [ "$PUSH_OK" -eq 0 ]; then
    jq -r '.first_errors[] | "  error: \(.)"' "$J"
    echo "FAIL"
    exit 1
fi
echo "PASS"
