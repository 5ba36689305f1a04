#!/usr/bin/env bash
# Benchmark: `qasid sync` (every object size- and hash-checked, every bundle signature-verified,
# fsynced, index installed last) against an rsync daemon moving the same files, same run.
#
#   bash benches/sync_vs_rsync.sh                 # full run (needs root for apt if rsync is missing)
#   SMALL=1000 LARGE=10000 RUNS=3 bash benches/sync_vs_rsync.sh
#
# Three cases, all on 127.0.0.1, each measured RUNS (3) times with qasid and rsync runs
# interleaved (qasid, rsync, qasid, rsync, ...), because the machines are shared and their disk
# and syscall speed change by several times from one minute to the next; every run is printed
# and the ratio is taken between the medians of the two sides:
#   1. initial:     SMALL bundles of ~16 KiB into an empty store / empty folder (a fresh one each
#                   run, deleted after it).
#   2. incremental: both sides hold LARGE bundles; each round publishes ONE more bundle
#                   (LARGE+1, then LARGE+2, ...), then runs one qasid sync and one rsync over it.
#   3. no change:   nothing new among LARGE+RUNS.
# The upstream is a `qasid mirror` serving the publisher's repo folder; rsync serves the same
# folder from `rsync --daemon` with a private rsyncd.conf. For qasid it prints the process wall
# time and the round's own time (`elapsed_ms` of `--json`: without process start-up, opening
# the store and re-verifying the held index), the requests and body bytes received by kind (HTTP
# headers not included, about 150-250 bytes a request); for rsync the wall time and the bytes it
# reports received. Ratios are qasid / rsync (below 1 means qasid is faster).
#
# It prints `RESULT | what | figure | target | PASS/FAIL/-` lines for scripts/bench.sh, and
# exits non-zero if a sync does not fetch everything. Every process started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL="${SMALL:-1000}"
LARGE="${LARGE:-10000}"
RUNS="${RUNS:-3}"
QASID_PORT="${QASID_PORT:-18490}"
RSYNC_PORT="${RSYNC_PORT:-18491}"
JOBS="${JOBS:-$(nproc)}"

# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_need rsync:rsync python3:python3 curl:curl
bench_qasid

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
# Without these, a Ctrl-C or a kill would end bash without running the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# now_us: sets NOW to the wall clock in microseconds, without starting a process.
now_us() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        NOW="${EPOCHREALTIME//[.,]/}"
    else
        NOW="$(date +%s%6N)"
    fi
}
# ms MICROSECONDS: prints milliseconds with one decimal.
ms() { printf '%d.%d' "$(($1 / 1000))" "$(($1 % 1000 / 100))"; }

# Arithmetic, medians and the JSON reports, in one helper.
cat >"$WORK/calc.py" <<'PY'
import base64, json, os, statistics, sys

def num(s):
    return float(s)

def fmt_ratio(x):
    return f"{x:.2f}x" if x >= 0.1 else (f"{x:.3f}x" if x >= 0.001 else f"{x:.4f}x")

def fmt_num(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"

def report(path):
    # round_ms requests not_modified bundles_installed head pieces bundles minisigs
    r = json.load(open(path))
    assert len(r["upstreams"]) == 1, r["upstreams"]
    u = r["upstreams"][0]
    assert not u["errors"], u["errors"]
    for p in r["publishers"]:
        assert not p["errors"], p["errors"]
        assert p["missing"] == 0 and p["installed"] == p["newest"], p
    b = u["bytes"]
    print(r["elapsed_ms"], u["requests"], u["not_modified"], u["bundles"],
          b["head"], b["pieces"], b["bundles"], b["minisigs"])

def expect(pubdir, path):
    # What a store holding the previous index needs after one publish: the new index.json, the
    # batch piece its head names, and each bundle that batch adds with its minisig. Prints
    # "PASS|FAIL requests head pieces bundles minisigs" (the expected figures).
    env = json.load(open(os.path.join(pubdir, "index.json")))
    head = json.loads(base64.b64decode(env["head"]))
    batch = head["log"]["batch"]
    piece = json.load(open(os.path.join(pubdir, "pieces", batch["sha256"] + ".json")))
    want = {"head": os.path.getsize(os.path.join(pubdir, "index.json")),
            "pieces": batch["size"], "bundles": 0, "minisigs": 0}
    requests = 2
    for e in piece["entries"]:
        if e.get("op") != "add":
            continue
        sha = e["bundle"]["sha256"]
        want["bundles"] += e["bundle"]["size"]
        want["minisigs"] += os.path.getsize(os.path.join(pubdir, "bundles", sha + ".zip.minisig"))
        requests += 2
    u = json.load(open(path))["upstreams"][0]
    ok = (u["requests"] == requests and u["not_modified"] == 0
          and all(u["bytes"][k] == v for k, v in want.items()))
    print("PASS" if ok else "FAIL", requests,
          want["head"], want["pieces"], want["bundles"], want["minisigs"])

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "median":            # median V...
    print(fmt_num(statistics.median(map(num, args))))
elif cmd == "median_int":      # median_int V...
    print(int(statistics.median(map(num, args))))
elif cmd == "ratio":           # ratio Q R
    print(fmt_ratio(num(args[0]) / max(num(args[1]), 1e-9)))
elif cmd == "le":              # le Q R TARGET: PASS if Q / R <= TARGET
    print("PASS" if num(args[0]) / max(num(args[1]), 1e-9) <= num(args[2]) else "FAIL")
elif cmd == "report":
    report(args[0])
elif cmd == "expect":
    expect(args[0], args[1])
else:
    sys.exit(f"calc.py: unknown command {cmd}")
PY
calc() { python3 "$WORK/calc.py" "$@"; }

"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
PUB="$WORK/keys/publisher.pub"


# check_count DIR N WHAT: fails the benchmark unless DIR holds exactly N bundles.
check_count() {
    local count
    count=$(find "$1" -name '*.zip' | wc -l)
    if [ "$count" -ne "$2" ]; then
        echo "$3 holds $count of $2 bundles: the sync did not fetch everything" >&2
        exit 1
    fi
}

echo "making $((LARGE + RUNS)) bundles..."
make_bundles 1 "$((LARGE + RUNS))"
BUNDLE_BYTES="$(stat -c %s "$WORK/zips/s1.zip")"

SMALL_REPO="$WORK/repo-small"
LARGE_REPO="$WORK/repo-large"
publish_range "$SMALL_REPO" 1 "$SMALL"
publish_range "$LARGE_REPO" 1 "$LARGE"
LARGE_PUB_DIR="$(echo "$LARGE_REPO"/qasid/v1/publishers/*)"
[ -f "$LARGE_PUB_DIR/index.json" ] || { echo "no publisher folder in $LARGE_REPO"; exit 1; }

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
for _ in $(seq 100); do
    rsync --list-only "rsync://127.0.0.1:$RSYNC_PORT/" >/dev/null 2>&1 && break
    sleep 0.05
done
rsync --list-only "rsync://127.0.0.1:$RSYNC_PORT/" >/dev/null || { echo "rsync daemon did not start"; exit 1; }

# qasid_sync NAME STORE: one `qasid sync --once` round; sets Q_WALL (ms), Q_ROUND (ms),
# Q_REQ, Q_304, Q_INSTALLED, Q_HEAD/Q_PIECES/Q_BUNDLES/Q_SIGS/Q_TOTAL (body bytes).
# Fails the benchmark if the round reports any error or leaves a bundle missing.
qasid_sync() {
    local start out
    now_us; start=$NOW
    "$QASID" sync --once --json --store "$2" --publisher "$PUB" \
        --upstream "http://127.0.0.1:$QASID_PORT/" >"$WORK/$1.json"
    now_us
    Q_WALL=$(ms "$((NOW - start))")
    out=$(calc report "$WORK/$1.json")
    read -r Q_ROUND Q_REQ Q_304 Q_INSTALLED Q_HEAD Q_PIECES Q_BUNDLES Q_SIGS <<<"$out"
    Q_TOTAL=$((Q_HEAD + Q_PIECES + Q_BUNDLES + Q_SIGS))
}

# rsync_run MODULE DEST: sets R_WALL (ms), R_BYTES (bytes received, from --stats).
rsync_run() {
    local start
    now_us; start=$NOW
    rsync -a --stats "rsync://127.0.0.1:$RSYNC_PORT/$1/" "$2/" >"$WORK/rsync.out"
    now_us
    R_WALL=$(ms "$((NOW - start))")
    R_BYTES=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$WORK/rsync.out" | tr -d ,)
    [ -n "$R_BYTES" ] || { echo "rsync printed no byte count"; cat "$WORK/rsync.out"; exit 1; }
}

echo
echo "bundle size: $BUNDLE_BYTES bytes; machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "every case: $RUNS runs each side, interleaved qasid/rsync; ratios are between medians"

# ---- 1. initial sync of SMALL bundles, a fresh store / folder each run ----
start_mirror "$SMALL_REPO"
echo
echo "1. initial sync, $SMALL bundles into an empty store / folder (all verified):"
QW=() QR=() RW=()
for i in $(seq "$RUNS"); do
    qasid_sync "initial-$i" "$WORK/q-initial-$i"
    check_count "$WORK/q-initial-$i" "$SMALL" "qasid store (initial run $i)"
    rsync_run small "$WORK/r-initial-$i"
    check_count "$WORK/r-initial-$i" "$SMALL" "rsync folder (initial run $i)"
    echo "   run $i: qasid ${Q_WALL} ms wall (round ${Q_ROUND} ms), $Q_REQ requests, $Q_TOTAL body bytes | rsync ${R_WALL} ms, $R_BYTES bytes"
    QW+=("$Q_WALL") QR+=("$Q_ROUND") RW+=("$R_WALL")
    rm -rf "$WORK/q-initial-$i" "$WORK/r-initial-$i"
done
stop_mirror
QW_MED=$(calc median "${QW[@]}") QR_MED=$(calc median "${QR[@]}") RW_MED=$(calc median "${RW[@]}")
echo "   medians: qasid ${QW_MED} ms wall (round ${QR_MED} ms), rsync ${RW_MED} ms;" \
    "wall $(calc ratio "$QW_MED" "$RW_MED"), round only $(calc ratio "$QR_MED" "$RW_MED")"
RESULTS=()
RESULTS+=("RESULT | sync initial $SMALL x 16 KiB, all verified: wall vs rsync daemon | $(calc ratio "$QW_MED" "$RW_MED") (qasid $QW_MED ms, rsync $RW_MED ms; medians of $RUNS) | target <= 1.0x | $(calc le "$QW_MED" "$RW_MED" 1.0)")

# ---- prepare LARGE on both sides ----
start_mirror "$LARGE_REPO"
qasid_sync large-initial "$WORK/q-large"
check_count "$WORK/q-large" "$LARGE" "qasid store (initial $LARGE)"
LARGE_Q_WALL=$Q_WALL
rsync_run large "$WORK/r-large"
check_count "$WORK/r-large" "$LARGE" "rsync folder (initial $LARGE)"
FILES=$(find "$WORK/r-large" -type f | wc -l)
echo
echo "   (initial sync of $LARGE bundles, $FILES files: qasid ${LARGE_Q_WALL} ms, rsync ${R_WALL} ms)"

# ---- 2. incremental: each round publishes one more bundle ----
echo
echo "2. incremental, 1 new bundle among $LARGE+ per round:"
QW=() QR=() RW=() QB=() RB=()
INC_OK=yes
for i in $(seq "$RUNS"); do
    n=$((LARGE + i))
    publish_range "$LARGE_REPO" "$n" "$n"
    qasid_sync "incremental-$i" "$WORK/q-large"
    check_count "$WORK/q-large" "$n" "qasid store (incremental round $i)"
    out=$(calc expect "$LARGE_PUB_DIR" "$WORK/incremental-$i.json")
    read -r verdict e_req e_head e_pieces e_bundles e_sigs <<<"$out"
    [ "$verdict" = PASS ] || INC_OK=no
    rsync_run large "$WORK/r-large"
    check_count "$WORK/r-large" "$n" "rsync folder (incremental round $i)"
    echo "   round $i (s$n): qasid ${Q_WALL} ms wall (round ${Q_ROUND} ms) | rsync ${R_WALL} ms, $R_BYTES bytes"
    echo "      qasid $Q_REQ requests, bytes: index.json $Q_HEAD + pieces $Q_PIECES + bundle $Q_BUNDLES + minisig $Q_SIGS = $Q_TOTAL"
    if [ "$verdict" != PASS ]; then
        echo "      NOT the minimum: expected $e_req requests, index.json $e_head + pieces $e_pieces + bundle $e_bundles + minisig $e_sigs"
    fi
    QW+=("$Q_WALL") QR+=("$Q_ROUND") RW+=("$R_WALL") QB+=("$Q_TOTAL") RB+=("$R_BYTES")
done
QW_MED=$(calc median "${QW[@]}") QR_MED=$(calc median "${QR[@]}") RW_MED=$(calc median "${RW[@]}")
QB_MED=$(calc median_int "${QB[@]}") RB_MED=$(calc median_int "${RB[@]}")
echo "   medians: qasid ${QW_MED} ms wall (round ${QR_MED} ms), rsync ${RW_MED} ms;" \
    "wall $(calc ratio "$QW_MED" "$RW_MED"), round only $(calc ratio "$QR_MED" "$RW_MED"), bytes $(calc ratio "$QB_MED" "$RB_MED")"
RESULTS+=("RESULT | sync incremental 1 new of $LARGE: round vs rsync | $(calc ratio "$QR_MED" "$RW_MED") (qasid round $QR_MED ms, rsync $RW_MED ms; medians of $RUNS) | target <= 0.3x | $(calc le "$QR_MED" "$RW_MED" 0.3)")
RESULTS+=("RESULT | sync incremental 1 new of $LARGE: process wall vs rsync | $(calc ratio "$QW_MED" "$RW_MED") (qasid $QW_MED ms, rsync $RW_MED ms; medians of $RUNS) | reference only | -")
RESULTS+=("RESULT | sync incremental: bytes on the wire vs rsync | $QB_MED vs $RB_MED bytes ($(calc ratio "$QB_MED" "$RB_MED"); medians of $RUNS; qasid counts bodies, not ~200 B of headers a request) | only head, new pieces, bundle (and its minisig) | $([ "$INC_OK" = yes ] && echo PASS || echo FAIL)")

# ---- 3. no change ----
echo
echo "3. nothing new among $((LARGE + RUNS)):"
QW=() QR=() RW=() REQS=() NMS=()
NOCHANGE_OK=yes
for i in $(seq "$RUNS"); do
    qasid_sync "nochange-$i" "$WORK/q-large"
    rsync_run large "$WORK/r-large"
    echo "   run $i: qasid ${Q_WALL} ms wall (round ${Q_ROUND} ms), $Q_REQ request(s), $Q_304 answered 304, $Q_TOTAL body bytes | rsync ${R_WALL} ms, $R_BYTES bytes"
    if [ "$Q_REQ" -ne 1 ] || [ "$Q_304" -ne 1 ] || [ "$Q_TOTAL" -ne 0 ] || [ "$Q_INSTALLED" -ne 0 ]; then
        NOCHANGE_OK=no
    fi
    QW+=("$Q_WALL") QR+=("$Q_ROUND") RW+=("$R_WALL") REQS+=("$Q_REQ") NMS+=("$Q_304")
done
stop_mirror
check_count "$WORK/q-large" "$((LARGE + RUNS))" "qasid store (no change)"
check_count "$WORK/r-large" "$((LARGE + RUNS))" "rsync folder (no change)"
QW_MED=$(calc median "${QW[@]}") QR_MED=$(calc median "${QR[@]}") RW_MED=$(calc median "${RW[@]}")
echo "   medians: qasid ${QW_MED} ms wall (round ${QR_MED} ms), rsync ${RW_MED} ms;" \
    "wall $(calc ratio "$QW_MED" "$RW_MED"), round only $(calc ratio "$QR_MED" "$RW_MED")"
if [ "$NOCHANGE_OK" = yes ]; then
    NOTE="1 request, answered 304"
else
    NOTE="requests per run $(IFS=/; echo "${REQS[*]}"), answered 304 $(IFS=/; echo "${NMS[*]}")"
fi
VERDICT=$(calc le "$QR_MED" "$RW_MED" 0.05)
[ "$NOCHANGE_OK" = yes ] || VERDICT=FAIL
RESULTS+=("RESULT | sync no change: round vs rsync | $(calc ratio "$QR_MED" "$RW_MED") ($NOTE; qasid round $QR_MED ms, rsync $RW_MED ms; medians of $RUNS) | target <= 0.05x | $VERDICT")
RESULTS+=("RESULT | sync no change: process wall vs rsync | $(calc ratio "$QW_MED" "$RW_MED") (qasid $QW_MED ms, rsync $RW_MED ms; medians of $RUNS) | reference only | -")

echo
printf '%s\n' "${RESULTS[@]}"
