#!/usr/bin/env bash
# Benchmark: a `qasid mirror` front end serving 16 KiB bundles from a Garage bucket (three nodes
# on loopback, scripts/garage-cluster.sh) with its verified-object cache warm, vs the same binary
# serving the same bundles from a folder store. Same machine, same run, same wrk load.
#
#   bash benches/bucket_serve.sh                      # release build, 10 s per run
#   QASID_BIN=target/debug/qasid DURATION=5s bash benches/bucket_serve.sh
#
# Publishes COUNT (default 64) articles of 16 KiB into a repo (the repo is a folder store, as
# the layout is the same), copies it into the bucket with rclone (a third-party S3 client),
# starts both mirrors on loopback ports, checks that both serve the published bytes, warms the
# front end's cache (one GET of every bundle), then runs `wrk -t2 -c64` over all COUNT bundle
# URLs (a Lua script picks them round-robin) against the folder mirror, then the front end.
# Prints requests/s, p99 and the ratio; target >= 0.8x. Needs garage (scripts/install-garage.sh),
# wrk, rclone, jq, curl. Every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
COUNT="${COUNT:-64}"

for tool in garage wrk rclone jq curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bucket_serve: needs $tool on PATH" >&2; exit 1; }
done
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_qasid

WORK="$(mktemp -d /tmp/qasid-bucket-bench.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    bash scripts/garage-cluster.sh "$WORK/garage" stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "starting a three-node Garage cluster"
eval "$(bash scripts/garage-cluster.sh "$WORK/garage" start --owner $$)"

# ---- COUNT articles of 16 KiB, published ----
"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
REPO="$WORK/repo"
BUNDLES=()
for i in $(seq 1 "$COUNT"); do
    mkdir -p "$WORK/a$i/images"
    printf -- '---\ntitle: Article %s\nauthor: Bench\ndate: 2026-01-01\nlanguage: en\n---\n\n# Article %s\n\n![photo](images/photo.jpg)\n' \
        "$i" "$i" >"$WORK/a$i/article.md"
    head -c 15800 /dev/urandom >"$WORK/a$i/images/photo.jpg"
    "$QASID" bundle "$WORK/a$i" --key "$WORK/keys/publisher.key" --name "article-$i" \
        --out "$WORK/a$i.zip" >/dev/null
    BUNDLES+=("$WORK/a$i.zip")
done
"$QASID" publish "${BUNDLES[@]}" --repo "$REPO" --key "$WORK/keys/publisher.key" >/dev/null
HEX="$(ls "$REPO/qasid/v1/publishers")"
PATHS=()
for zip in "${BUNDLES[@]}"; do
    PATHS+=("/qasid/v1/publishers/$HEX/bundles/$(sha256sum "$zip" | cut -d' ' -f1).zip")
done
SIZE="$(stat -c %s "${BUNDLES[0]}")"

# ---- the same repo in the bucket ----
export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other \
    RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    RCLONE_CONFIG_GARAGE_REGION="$AWS_REGION" RCLONE_CONFIG_GARAGE_ENDPOINT="$AWS_ENDPOINT_URL" \
    RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true
# (rclone's AWS SDK refuses AWS_CA_BUNDLE over its own transport.)
env -u AWS_CA_BUNDLE rclone --config /dev/null copy "$REPO/qasid" "garage:$GARAGE_BUCKET/news/qasid"

# ---- both mirrors ----
start_mirror() { # NAME STORE [--work DIR]; sets BASE
    local name=$1
    shift
    "$QASID" mirror --listen 127.0.0.1:0 --publisher "$WORK/keys/publisher.pub" --store "$@" \
        >/dev/null 2>"$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        grep -q "listening on" "$WORK/$name.log" 2>/dev/null && break
        sleep 0.05
    done
    grep -q "listening on" "$WORK/$name.log" || { cat "$WORK/$name.log" >&2; exit 1; }
    BASE="$(sed -n 's/.*listening on //p' "$WORK/$name.log" | head -n1)"
}
start_mirror folder "$REPO"
FOLDER_BASE=$BASE
start_mirror bucket "s3://$GARAGE_BUCKET/news" --work "$WORK/front-end"
BUCKET_BASE=$BASE

for i in "${!PATHS[@]}"; do
    want="$(sha256sum "${BUNDLES[$i]}" | cut -d' ' -f1)"
    for base in "$FOLDER_BASE" "$BUCKET_BASE"; do
        got="$(curl -fsS "$base${PATHS[$i]}" | sha256sum | cut -d' ' -f1)"
        [ "$got" = "$want" ] || { echo "$base serves the wrong bytes for ${PATHS[$i]}" >&2; exit 1; }
    done
done
GETS_BEFORE="$(curl -fsS "$BUCKET_BASE/metrics" | awk '/^qasid_bucket_reads_total\{outcome="get"\}/ { print $2 }')"

# wrk picks the bundle URLs round-robin, per connection.
{
    echo "paths = {"
    for p in "${PATHS[@]}"; do echo "  \"$p\","; done
    echo "}"
    cat <<'EOF'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end
EOF
} >"$WORK/paths.lua"

bench() { # BASE -> "req/s p99"
    local out
    out="$(wrk -t2 -c64 -d"$DURATION" --latency -s "$WORK/paths.lua" "$1")"
    echo "$out" >>"$WORK/wrk.log"
    echo "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out") $(awk '$1 == "99%" { print $2 }' <<<"$out")"
}

echo "$COUNT bundles of $SIZE bytes; machine: $(nproc) cores; wrk -t2 -c64 -d$DURATION on loopback"
wrk -t2 -c64 -d2s -s "$WORK/paths.lua" "$FOLDER_BASE" >/dev/null
wrk -t2 -c64 -d2s -s "$WORK/paths.lua" "$BUCKET_BASE" >/dev/null
read -r FOLDER_RPS FOLDER_P99 < <(bench "$FOLDER_BASE")
read -r BUCKET_RPS BUCKET_P99 < <(bench "$BUCKET_BASE")
GETS_AFTER="$(curl -fsS "$BUCKET_BASE/metrics" | awk '/^qasid_bucket_reads_total\{outcome="get"\}/ { print $2 }')"
RATIO="$(awk -v a="$BUCKET_RPS" -v b="$FOLDER_RPS" 'BEGIN { printf "%.2f", a / b }')"
printf '%-22s %12s req/s   p99 %s\n' "folder store" "$FOLDER_RPS" "$FOLDER_P99"
printf '%-22s %12s req/s   p99 %s\n' "bucket (cache warm)" "$BUCKET_RPS" "$BUCKET_P99"
echo "ratio bucket/folder: $RATIO"
echo "requests the front end sent to the bucket during the runs: $((GETS_AFTER - GETS_BEFORE)) (index.json re-reads, at most one a second)"
echo "RESULT | front end over a Garage bucket, GET 16 KiB, cache warm, wrk -t2 -c64: req/s vs folder store | ${RATIO}x (p99 bucket $BUCKET_P99, folder $FOLDER_P99) | target >= 0.8x | $(awk -v r="$RATIO" 'BEGIN { print (r >= 0.8) ? "PASS" : "FAIL" }')"
