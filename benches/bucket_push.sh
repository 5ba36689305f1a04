#!/usr/bin/env bash
# Benchmark: `qasid push --to s3://…` (the repo's index verified, every uploaded bundle verified
# against the publisher's key, index.json last by the heads/ rule) against `rclone copy` (Debian's
# rclone, S3 backend) of the same repo folder, to the same three-node Garage cluster on
# 127.0.0.1 (scripts/garage-cluster.sh, replication factor 3), same run.
#
#   bash benches/bucket_push.sh
#   SMALL=1000 LARGE=10000 RUNS=3 bash benches/bucket_push.sh
#
# Two cases, each measured RUNS (3) times with qasid and rclone runs interleaved, because the
# machines are shared and noisy; every run is printed and the ratio is taken between medians:
#   1. initial:     SMALL bundles of ~16 KiB pushed into an empty bucket (a fresh bucket per run
#                   and side).
#   2. incremental: both buckets hold LARGE bundles; each round publishes ONE more bundle, then
#                   runs one qasid push and one rclone copy (which lists the bucket to find what
#                   is new). The bytes qasid uploaded (its --json) must be the new objects only.
# rclone runs with AWS_CA_BUNDLE unset and the same parallelism as qasid (32 transfers and
# checkers). Ratios are qasid / rclone (below 1 means qasid is faster). Targets (issue 15):
# initial <= 1.0, incremental <= 0.1.
#
# It prints `RESULT | what | figure | target | PASS/FAIL/-` lines for scripts/bench.sh. Every
# process started is stopped (the cluster by its watchdog if this script is killed).
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL="${SMALL:-1000}"
LARGE="${LARGE:-10000}"
RUNS="${RUNS:-3}"
JOBS="${JOBS:-$(nproc)}"
PARALLEL=32

command -v rclone >/dev/null || { echo "rclone is needed (apt-get install rclone)"; exit 1; }
command -v "${GARAGE:-garage}" >/dev/null ||
    { echo "garage is needed (cargo install --locked garage --version 2.5.0)"; exit 1; }

# QASID_BIN=path/to/qasid skips the release build (a debug build only makes qasid slower).
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_qasid

WORK="$(mktemp -d /tmp/qasid-bucket-bench.XXXXXX)"
CLUSTER="$WORK/garage"
cleanup() {
    bash scripts/garage-cluster.sh "$CLUSTER" stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "starting a three-node Garage cluster..."
eval "$(bash scripts/garage-cluster.sh "$CLUSTER" start --owner $$)"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ENDPOINT_URL
new_bucket() { bash scripts/garage-cluster.sh "$CLUSTER" bucket "$1" >/dev/null; }

# rclone's S3 remote `garage:` for the same cluster and key, configured by environment only.
export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
export RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
export RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
export RCLONE_CONFIG_GARAGE_REGION="$AWS_REGION"
export RCLONE_CONFIG_GARAGE_ENDPOINT="$AWS_ENDPOINT_URL"
export RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true
rclone_copy() {
    env -u AWS_CA_BUNDLE rclone --config /dev/null copy --transfers "$PARALLEL" \
        --checkers "$PARALLEL" "$1" "garage:$2"
}

"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null


echo "making $((LARGE + RUNS)) bundles..."
make_bundles 1 "$((LARGE + RUNS))"
SMALL_REPO="$WORK/repo-small"
LARGE_REPO="$WORK/repo-large"
publish_range "$SMALL_REPO" 1 "$SMALL"
publish_range "$LARGE_REPO" 1 "$LARGE"
BUNDLE_BYTES="$(stat -c %s "$WORK/zips/s1.zip")"

# ---- 1. initial: SMALL bundles into an empty bucket ----
echo "== initial: $SMALL bundles of $BUNDLE_BYTES bytes into an empty bucket"
q_times=()
r_times=()
for run in $(seq 1 "$RUNS"); do
    new_bucket "q-initial-$run"
    new_bucket "r-initial-$run"
    t=$(now_ms)
    "$QASID" push --json --repo "$SMALL_REPO" --to "s3://q-initial-$run/site" >"$WORK/push.json"
    q=$(($(now_ms) - t))
    t=$(now_ms)
    rclone_copy "$SMALL_REPO" "r-initial-$run/site"
    r=$(($(now_ms) - t))
    sent=$(jq '.pushes[0].sent' "$WORK/push.json")
    echo "run $run: qasid $q ms ($sent objects), rclone $r ms"
    q_times+=("$q")
    r_times+=("$r")
done
qm=$(median "${q_times[@]}")
rm_=$(median "${r_times[@]}")
ratio=$(python3 -c "print(f'{$qm / $rm_:.2f}')")
verdict=$(python3 -c "print('PASS' if $qm <= $rm_ else 'FAIL')")
echo "RESULT | bucket_push initial ($SMALL x 16 KiB, Garage x3) | ${ratio}x rclone copy (qasid $qm ms, rclone $rm_ ms) | <= 1.0x | $verdict"

# ---- 2. incremental: one new bundle among LARGE ----
echo "== incremental: one new bundle among $LARGE"
new_bucket q-large
new_bucket r-large
t=$(now_ms)
"$QASID" push --json --repo "$LARGE_REPO" --to "s3://q-large/site" >/dev/null
echo "filled with qasid in $(($(now_ms) - t)) ms"
t=$(now_ms)
rclone_copy "$LARGE_REPO" "r-large/site"
echo "filled with rclone in $(($(now_ms) - t)) ms"
q_times=()
r_times=()
bytes_ok=PASS
for run in $(seq 1 "$RUNS"); do
    n=$((LARGE + run))
    publish_range "$LARGE_REPO" "$n" "$n"
    new_bytes=$(stat -c %s "$WORK/zips/s$n.zip")
    t=$(now_ms)
    "$QASID" push --json --repo "$LARGE_REPO" --to "s3://q-large/site" >"$WORK/push.json"
    q=$(($(now_ms) - t))
    t=$(now_ms)
    rclone_copy "$LARGE_REPO" "r-large/site"
    r=$(($(now_ms) - t))
    sent=$(jq '.pushes[0].sent' "$WORK/push.json")
    bytes=$(jq '.pushes[0].bytes' "$WORK/push.json")
    # The new bundle and its .minisig, the new index pieces, the head copy and index.json.
    extra=$((bytes - new_bytes))
    echo "run $run: qasid $q ms ($sent objects, $bytes bytes: the $new_bytes-byte bundle + $extra), rclone $r ms"
    if [ "$bytes" -lt "$new_bytes" ] || [ "$extra" -gt $((256 * 1024)) ]; then bytes_ok=FAIL; fi
    q_times+=("$q")
    r_times+=("$r")
done
qm=$(median "${q_times[@]}")
rm_=$(median "${r_times[@]}")
ratio=$(python3 -c "print(f'{$qm / $rm_:.3f}')")
verdict=$(python3 -c "print('PASS' if $qm <= 0.1 * $rm_ else 'FAIL')")
echo "RESULT | bucket_push incremental (1 new among $LARGE, Garage x3) | ${ratio}x rclone copy (qasid $qm ms, rclone $rm_ ms) | <= 0.1x | $verdict"
echo "RESULT | bucket_push incremental bytes | the new bundle, its .minisig and index pieces, head copy and index.json only | new objects only | $bytes_ok"
