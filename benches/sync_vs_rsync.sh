#!/usr/bin/env bash
# Benchmark: `qasid sync` (every object size- and hash-checked, every bundle signature-verified,
# fsynced, index installed last) against an rsync daemon moving the same files, same run.
#
#   bash benches/sync_vs_rsync.sh                 # full run (needs root for apt if rsync is missing)
#   SMALL=1000 LARGE=10000 bash benches/sync_vs_rsync.sh
#
# Three cases, all on 127.0.0.1:
#   1. initial:     SMALL bundles of ~16 KiB into an empty store / empty folder.
#   2. incremental: 1 new bundle among LARGE (both sides hold the LARGE first).
#   3. no change:   nothing new among LARGE.
# The upstream is a `qasid mirror` serving the publisher's repo folder; rsync serves the same
# folder from `rsync --daemon` with a private rsyncd.conf. For qasid it prints the process wall
# time and the round's own time (without process start-up: opening the store and re-verifying
# the held index), the requests and body bytes received by kind (HTTP headers not included,
# about 150-250 bytes a request); for rsync the wall time and the bytes it reports received.
# Ratios are qasid / rsync (below 1 means qasid is faster). Every process started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL="${SMALL:-1000}"
LARGE="${LARGE:-10000}"
QASID_PORT="${QASID_PORT:-18490}"
RSYNC_PORT="${RSYNC_PORT:-18491}"
JOBS="${JOBS:-$(nproc)}"

need=()
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release --quiet
QASID="$PWD/target/release/qasid"

WORK="$(mktemp -d /tmp/qasid-sync-bench.XXXXXX)"
chmod 755 "$WORK"
MIRROR_PID=""
RSYNC_PID=""
cleanup() {
    for pid in "$MIRROR_PID" "$RSYNC_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

ms_now() { date +%s%N | cut -b1-13; }

"$QASID" keygen --out "$WORK/keys" >/dev/null
PUB="$WORK/keys/publisher.pub"

# make_bundles FIRST LAST: one article folder and signed ~16 KiB bundle per number.
make_bundles() {
    seq "$1" "$2" | xargs -P "$JOBS" -I{} sh -c '
        set -e
        d="$0/src/a{}"
        mkdir -p "$d/images"
        printf -- "---\ntitle: Benchmark story {}\nauthor: Bench\ndate: 2026-01-01\nlanguage: en\n---\n\n# Story {}\n" >"$d/article.md"
        head -c 15800 /dev/urandom >"$d/images/photo.bin"
        "$1" bundle "$d" --key "$0/keys/publisher.key" --name "s{}" --out "$0/zips/s{}.zip" >/dev/null
        rm -rf "$d"
    ' "$WORK" "$QASID"
}

# publish_range REPO FIRST LAST
publish_range() {
    local repo="$1"
    seq "$2" "$3" | sed "s|.*|$WORK/zips/s&.zip|" |
        xargs "$QASID" publish --repo "$repo" --key "$WORK/keys/publisher.key" >/dev/null
}

mkdir -p "$WORK/zips"
echo "making $LARGE + 1 bundles..."
make_bundles 1 "$((LARGE + 1))"
BUNDLE_BYTES="$(stat -c %s "$WORK/zips/s1.zip")"

SMALL_REPO="$WORK/repo-small"
LARGE_REPO="$WORK/repo-large"
publish_range "$SMALL_REPO" 1 "$SMALL"
publish_range "$LARGE_REPO" 1 "$LARGE"
chmod -R a+rX "$SMALL_REPO" "$LARGE_REPO"

# ---- servers: a qasid mirror over one repo at a time, one rsync daemon with both ----

start_mirror() {
    "$QASID" mirror --listen "127.0.0.1:$QASID_PORT" --store "$1" --publisher "$PUB" \
        2>"$WORK/mirror.log" &
    MIRROR_PID=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$QASID_PORT/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "mirror did not start"; cat "$WORK/mirror.log"; exit 1
}
stop_mirror() {
    kill -TERM "$MIRROR_PID"; wait "$MIRROR_PID" 2>/dev/null || true; MIRROR_PID=""
}

cat >"$WORK/rsyncd.conf" <<EOF
use chroot = no
uid = $(id -u)
gid = $(id -g)
pid file = $WORK/rsyncd.pid
log file = $WORK/rsyncd.log
[small]
    path = $SMALL_REPO
    read only = yes
    exclude = .qasid/
[large]
    path = $LARGE_REPO
    read only = yes
    exclude = .qasid/
EOF
rsync --daemon --no-detach --address=127.0.0.1 --port="$RSYNC_PORT" --config="$WORK/rsyncd.conf" &
RSYNC_PID=$!
sleep 0.5

# qasid_sync NAME STORE: one `qasid sync --once` round; sets Q_WALL (ms), Q_ROUND (ms),
# Q_REQ, Q_304, Q_BYTES (head/pieces/bundles/minisigs/total).
qasid_sync() {
    local start end
    start=$(ms_now)
    "$QASID" sync --once --json --store "$2" --publisher "$PUB" \
        --upstream "http://127.0.0.1:$QASID_PORT/" >"$WORK/$1.json"
    end=$(ms_now)
    Q_WALL=$((end - start))
    read -r Q_ROUND Q_REQ Q_304 Q_HEAD Q_PIECES Q_BUNDLES Q_SIGS < <(python3 - "$WORK/$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u = r["upstreams"][0]
b = u["bytes"]
assert not u["errors"], u["errors"]
print(r["elapsed_ms"], u["requests"], u["not_modified"], b["head"], b["pieces"], b["bundles"], b["minisigs"])
PY
)
    Q_TOTAL=$((Q_HEAD + Q_PIECES + Q_BUNDLES + Q_SIGS))
}

# rsync_run MODULE DEST: sets R_WALL (ms), R_BYTES (bytes received, from --stats).
rsync_run() {
    local start end
    start=$(ms_now)
    rsync -a --stats "rsync://127.0.0.1:$RSYNC_PORT/$1/" "$2/" >"$WORK/rsync.out"
    end=$(ms_now)
    R_WALL=$((end - start))
    R_BYTES=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$WORK/rsync.out" | tr -d ,)
}

ratio() { python3 -c "print(f'{$1 / max($2, 1):.2f}x')"; }

echo
echo "bundle size: $BUNDLE_BYTES bytes; machine: $(nproc) CPUs, $(uname -r)"

# ---- 1. initial sync of SMALL bundles ----
start_mirror "$SMALL_REPO"
qasid_sync initial "$WORK/q-small"
stop_mirror
rsync_run small "$WORK/r-small"
COUNT=$(find "$WORK/q-small" -name '*.zip' | wc -l)
[ "$COUNT" -eq "$SMALL" ] || { echo "qasid synced $COUNT of $SMALL"; exit 1; }
echo
echo "1. initial sync, $SMALL bundles (all verified):"
echo "   qasid sync: ${Q_WALL} ms wall (round ${Q_ROUND} ms), $Q_REQ requests, $Q_TOTAL body bytes"
echo "   rsync:      ${R_WALL} ms wall, $R_BYTES bytes"
echo "   ratio wall: $(ratio "$Q_WALL" "$R_WALL")"
INITIAL_RATIO=$(ratio "$Q_WALL" "$R_WALL")

# ---- prepare LARGE on both sides ----
start_mirror "$LARGE_REPO"
qasid_sync large-initial "$WORK/q-large"
LARGE_Q_WALL=$Q_WALL
rsync_run large "$WORK/r-large"
echo
echo "   (initial sync of $LARGE: qasid ${LARGE_Q_WALL} ms, rsync ${R_WALL} ms)"

# ---- 2. incremental: one new bundle ----
publish_range "$LARGE_REPO" "$((LARGE + 1))" "$((LARGE + 1))"
chmod -R a+rX "$LARGE_REPO"
qasid_sync incremental "$WORK/q-large"
INC_Q_WALL=$Q_WALL INC_Q_ROUND=$Q_ROUND
rsync_run large "$WORK/r-large"
echo
echo "2. incremental, 1 new bundle among $LARGE:"
echo "   qasid sync: ${Q_WALL} ms wall (round ${Q_ROUND} ms), $Q_REQ requests"
echo "      bytes: index.json $Q_HEAD + pieces $Q_PIECES + bundle $Q_BUNDLES + minisig $Q_SIGS = $Q_TOTAL"
echo "   rsync:      ${R_WALL} ms wall, $R_BYTES bytes"
echo "   ratio wall: $(ratio "$INC_Q_WALL" "$R_WALL"), round only: $(ratio "$INC_Q_ROUND" "$R_WALL"), bytes: $(ratio "$Q_TOTAL" "$R_BYTES")"

# ---- 3. no change ----
qasid_sync nochange "$WORK/q-large"
rsync_run large "$WORK/r-large"
echo
echo "3. nothing new among $((LARGE + 1)):"
echo "   qasid sync: ${Q_WALL} ms wall (round ${Q_ROUND} ms), $Q_REQ request(s), $Q_304 answered 304, $Q_TOTAL body bytes"
echo "   rsync:      ${R_WALL} ms wall, $R_BYTES bytes"
echo "   ratio wall: $(ratio "$Q_WALL" "$R_WALL"), round only: $(ratio "$Q_ROUND" "$R_WALL")"
stop_mirror

echo
echo "summary: initial $INITIAL_RATIO of rsync (target <= 1.0x)"
