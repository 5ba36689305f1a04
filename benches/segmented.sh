#!/usr/bin/env bash
# Benchmark: segmented, chunk-verified downloads (docs/PROTOCOL.md §13) from four mirrors, each
# on its own address in its own network namespace behind its own 4 mbit tc throttle (the
# firewall simulation's approach: scripts/firewall-sim.sh), with aria2c (Debian's aria2, the
# same four URLs, segmented) as the reference, in the same run. Bundles of 2 MiB and 20 MiB.
#
#   sudo bash benches/segmented.sh                 # builds qasid (release) unless QASID_BIN
#   QASID_BIN=target/debug/qasid sudo -E bash benches/segmented.sh
#
# Cases (targets from issue 17):
#   a  four mirrors, the one qasid is given first blocked (nftables drop) 2 s in:
#      2 MiB verified in <= 2.0 s
#   b  four mirrors, none blocked: throughput >= 3.5 x one mirror's (qasid with one --mirror)
#   c  one of the four serves a bundle with one byte changed in every chunk (so the first
#      chunk it sends is bad): qasid names it lying with the chunk's index and offset, asks for
#      that chunk at most twice (counted in the mirrors' nginx access logs) and saves the
#      verified article; aria2c's file is checked against the sha256 too
#   d  qasid <= 1.0 x aria2c's time in cases a and b
#   e  bundle bytes on the wire <= 1.1 x the bundle size when nobody lies or is cut (from the
#      mirrors' nginx logs: body bytes sent for the bundle; tc's byte counters are printed too)
# aria2c gets --split=16 --max-connection-per-server=4 --min-split-size=1M (its smallest split:
# a 2 MiB file is fetched in two segments at most) and 2 s timeouts. qasid's time includes its
# index race, the chunk list and the bundle verification; aria2c's is the bundle alone.
# Each measurement is the median of ROUNDS runs (default 3), each with a fresh state folder.
# Needs root, iproute2, nftables, nginx, aria2c, jq; prints "SKIPPED: ..." and exits 0 without
# network namespaces. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
RATE=4mbit
CHUNK=262144

skip() {
    echo "SKIPPED: $*"
    exit 0
}
die() {
    echo "segmented: error: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || skip "network namespaces unavailable (needs root)"
for tool in ip tc nft nginx aria2c jq python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

P="qsg$$"
NAMESPACES=()
PIDS=()
WORK=""
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${NAMESPACES[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$P-probe" 2>/dev/null || skip "network namespaces unavailable (ip netns add failed)"
ip netns del "$P-probe"

# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_qasid
WORK="$(mktemp -d /tmp/qasid-segmented.XXXXXX)"
chmod 755 "$WORK"

# ---- topology: reader namespace, four mirror namespaces, one /30 link each ----
R="$P-r"
ip netns add "$R"
NAMESPACES+=("$R")
ip -n "$R" link set lo up
for i in 1 2 3 4; do
    ns="$P-m$i"
    ip netns add "$ns"
    NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
    ip link add "${P}r$i" netns "$R" type veth peer name "${P}m$i" netns "$ns"
    ip -n "$R" addr add "10.97.$i.1/30" dev "${P}r$i"
    ip -n "$ns" addr add "10.97.$i.2/30" dev "${P}m$i"
    ip -n "$R" link set "${P}r$i" up
    ip -n "$ns" link set "${P}m$i" up
    # The mirror's whole outgoing traffic (every connection together) at 4 mbit: a throttle
    # per address, as national firewalls apply it.
    ip netns exec "$ns" tc qdisc add dev "${P}m$i" root tbf rate "$RATE" burst 16kb latency 200ms
done

# ---- a publisher repo with a 2 MiB and a 20 MiB article ----
"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
make_article() { # NAME BYTES
    mkdir -p "$WORK/src-$1/images"
    printf -- '---\ntitle: Segmented %s\nauthor: Bench\ndate: 2026-01-01\nlanguage: en\n---\n\n# %s\n' \
        "$1" "$1" >"$WORK/src-$1/article.md"
    head -c "$2" /dev/urandom >"$WORK/src-$1/images/photo.jpg"
    "$QASID" bundle "$WORK/src-$1" --key "$WORK/keys/publisher.key" --name "$1" \
        --out "$WORK/$1.zip" >/dev/null
}
make_article small $((2 * 1048576 - 4096))
make_article large $((20 * 1048576 - 4096))
"$QASID" publish "$WORK/small.zip" "$WORK/large.zip" --repo "$WORK/repo" \
    --key "$WORK/keys/publisher.key" >/dev/null
PUBDIR="$(find "$WORK/repo/qasid/v1/publishers" -mindepth 1 -maxdepth 1 -type d)"
PUBREL="${PUBDIR#"$WORK/repo/"}"
for n in small large; do
    declare "SHA_$n=$(sha256sum "$WORK/$n.zip" | cut -d' ' -f1)"
    declare "SIZE_$n=$(stat -c %s "$WORK/$n.zip")"
done
# Mirror 4's copy of the repo has one byte changed in every chunk of each bundle (same size):
# whichever chunk it is asked for first is bad, and a liar is not asked again, so it sends
# exactly one bad chunk.
cp -r "$WORK/repo" "$WORK/repo-liar"
for n in small large; do
    sha_var="SHA_$n"
    python3 - "$WORK/repo-liar/$PUBREL/bundles/${!sha_var}.zip" "$CHUNK" <<'EOF'
import sys
path, chunk = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
for at in range(1000, len(data), chunk):
    data[at] ^= 0x55
open(path, "wb").write(data)
EOF
done

# ---- nginx in each mirror namespace; access logs with the range and body bytes ----
start_nginx() { # I ROOT
    local i="$1" root="$2" dir="$WORK/nginx$1"
    mkdir -p "$dir/logs"
    : >"$dir/logs/access.log"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
user root;
worker_processes 1;
error_log $dir/logs/error.log;
pid $dir/nginx.pid;
events { worker_connections 256; }
http {
    log_format bench '\$request_uri \$status \$body_bytes_sent "\$http_range"';
    access_log $dir/logs/access.log bench;
    sendfile on;
    server {
        listen 10.97.$i.2:8080;
        root $root;
        location / { }
    }
}
EOF
    ip netns exec "$P-m$i" nginx -c "$dir/nginx.conf" -p "$dir" &
    PIDS+=($!)
}
for i in 1 2 3; do start_nginx "$i" "$WORK/repo"; done
start_nginx 4 "$WORK/repo"
for i in 1 2 3 4; do
    for _ in $(seq 1 50); do
        ip netns exec "$R" bash -c "exec 3<>/dev/tcp/10.97.$i.2/8080" 2>/dev/null && break
        sleep 0.1
    done
done
URL() { echo "http://10.97.$1.2:8080/"; }

swap_root() { # I ROOT: point mirror I at another repo copy
    local i="$1"
    kill -TERM "${PIDS[$((i - 1))]}" 2>/dev/null || true
    wait "${PIDS[$((i - 1))]}" 2>/dev/null || true
    local dir="$WORK/nginx$i"
    sed -i "s|root .*;|root $2;|" "$dir/nginx.conf"
    ip netns exec "$P-m$i" nginx -c "$dir/nginx.conf" -p "$dir" &
    PIDS[$((i - 1))]=$!
    for _ in $(seq 1 50); do
        ip netns exec "$R" bash -c "exec 3<>/dev/tcp/10.97.$i.2/8080" 2>/dev/null && break
        sleep 0.1
    done
}
clear_logs() { for i in 1 2 3 4; do : >"$WORK/nginx$i/logs/access.log"; done; }
block() { # I: drop everything mirror I sends
    ip netns exec "$P-m$1" nft add table inet qsgblock
    ip netns exec "$P-m$1" nft add chain inet qsgblock out '{ type filter hook output priority 0; policy drop; }'
}
unblock() { ip netns exec "$P-m$1" nft delete table inet qsgblock 2>/dev/null || true; }
# bundle_bytes NAME: body bytes the mirrors' nginx sent for NAME's bundle since clear_logs.
bundle_bytes() {
    local sha_var="SHA_$1"
    cat "$WORK"/nginx*/logs/access.log | awk -v s="${!sha_var}.zip" '$1 ~ s { t += $3 } END { print t + 0 }'
}
tc_bytes() {
    local t=0 i n
    for i in 1 2 3 4; do
        n=$(ip netns exec "$P-m$i" tc -s qdisc show dev "${P}m$i" | awk '/Sent/ { print $2; exit }')
        t=$((t + n))
    done
    echo "$t"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

RUN=0
# qasid_fetch NAME BLOCK_AFTER MIRRORS...: prints seconds; the JSON goes to $WORK/last.json.
qasid_fetch() {
    local name="$1" block_after="$2"
    shift 2
    RUN=$((RUN + 1))
    local args=() m
    for m in "$@"; do args+=(--mirror "$(URL "$m")"); done
    local t0 t1 blocker=""
    t0=$(now)
    if [ "$block_after" != - ]; then
        (sleep "$block_after" && block "$1") &
        blocker=$!
    fi
    ip netns exec "$R" "$QASID" fetch "$name" "${args[@]}" --publisher "$WORK/keys/publisher.pub" \
        --state "$WORK/state-$RUN" --out "$WORK/out-$RUN" --json >"$WORK/last.json" 2>"$WORK/last.err" ||
        { cat "$WORK/last.err" >&2; die "qasid fetch $name failed"; }
    t1=$(now)
    [ -n "$blocker" ] && wait "$blocker"
    unblock "$1"
    rm -rf "$WORK/state-$RUN" "$WORK/out-$RUN"
    elapsed "$t0" "$t1"
}
# aria2_fetch NAME BLOCK_AFTER MIRRORS...: prints seconds; the file is $WORK/aria/NAME.zip.
aria2_fetch() {
    local name="$1" block_after="$2"
    shift 2
    local sha_var="SHA_$name" urls=() m
    for m in "$@"; do urls+=("$(URL "$m")$PUBREL/bundles/${!sha_var}.zip"); done
    rm -rf "$WORK/aria"
    local t0 t1 blocker=""
    t0=$(now)
    if [ "$block_after" != - ]; then
        (sleep "$block_after" && block "$1") &
        blocker=$!
    fi
    ip netns exec "$R" aria2c --quiet=true --dir "$WORK/aria" --out "$name.zip" \
        --split=16 --max-connection-per-server=4 --min-split-size=1M \
        --uri-selector=adaptive --connect-timeout=2 --timeout=2 --lowest-speed-limit=1K \
        --max-tries=5 --retry-wait=0 --allow-overwrite=true --auto-file-renaming=false \
        --file-allocation=none "${urls[@]}" >/dev/null 2>&1 || true
    t1=$(now)
    [ -n "$blocker" ] && wait "$blocker"
    unblock "$1"
    elapsed "$t0" "$t1"
}

result() { echo "RESULT | $1 | $2 | $3 | $4"; }
verdict() { awk -v a="$1" -v b="$2" "BEGIN { exit !(a $3 b) }" && echo PASS || echo FAIL; }

for name in small large; do
    size_var="SIZE_$name"
    size="${!size_var}"
    mib=$(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }')
    echo "== $name bundle: $size bytes ($mib), four mirrors at $RATE each"

    # (b) none blocked: four mirrors vs one, and aria2c on the same four.
    times=()
    for _ in $(seq 1 "$ROUNDS"); do times+=("$(qasid_fetch "$name" - 1)"); done
    one=$(printf '%s\n' "${times[@]}" | median)
    times=()
    clear_logs
    tc_before=$(tc_bytes)
    for _ in $(seq 1 "$ROUNDS"); do times+=("$(qasid_fetch "$name" - 1 2 3 4)"); done
    four=$(printf '%s\n' "${times[@]}" | median)
    wire=$(bundle_bytes "$name")
    tc_after=$(tc_bytes)
    delivered=$(jq '[.mirrors[].bytes_delivered] | add' "$WORK/last.json")
    wasted=$(jq '[.mirrors[].bytes_wasted] | add' "$WORK/last.json")
    times=()
    for _ in $(seq 1 "$ROUNDS"); do times+=("$(aria2_fetch "$name" - 1 2 3 4)"); done
    aria=$(printf '%s\n' "${times[@]}" | median)
    ratio=$(awk -v a="$one" -v b="$four" 'BEGIN { printf "%.2f", a / b }')
    echo "one mirror ${one}s, four mirrors ${four}s, aria2c (four) ${aria}s"
    echo "last run: ${delivered} bytes delivered, ${wasted} wasted (report); nginx sent $((wire / ROUNDS)) bundle bytes per run; tc counted $(((tc_after - tc_before) / ROUNDS)) bytes per run (all traffic, headers included)"
    result "segmented $name ($mib): throughput, four 4 mbit mirrors vs one" "${ratio}x (${one}s vs ${four}s)" ">= 3.5x" "$(verdict "$ratio" 3.5 '>=')"
    r=$(awk -v a="$four" -v b="$aria" 'BEGIN { printf "%.2f", a / b }')
    result "segmented $name: qasid vs aria2c, four mirrors" "${r}x (${four}s vs ${aria}s)" "<= 1.0x" "$(verdict "$r" 1.0 '<=')"
    w=$(awk -v a="$wire" -v r="$ROUNDS" -v s="$size" 'BEGIN { printf "%.3f", a / r / s }')
    result "segmented $name: bundle bytes on the wire / bundle size (nginx logs)" "${w}x" "<= 1.1x" "$(verdict "$w" 1.1 '<=')"

    # (a) the first mirror blocked 2 s in.
    times=()
    for _ in $(seq 1 "$ROUNDS"); do times+=("$(qasid_fetch "$name" 2 1 2 3 4)"); done
    qa=$(printf '%s\n' "${times[@]}" | median)
    times=()
    for _ in $(seq 1 "$ROUNDS"); do times+=("$(aria2_fetch "$name" 2 1 2 3 4)"); done
    aa=$(printf '%s\n' "${times[@]}" | median)
    echo "first mirror blocked after 2 s: qasid ${qa}s, aria2c ${aa}s"
    if [ "$name" = small ]; then
        result "segmented $name: verified, first mirror blocked after 2 s" "${qa}s" "<= 2.0 s" "$(verdict "$qa" 2.0 '<=')"
    else
        result "segmented $name: verified, first mirror blocked after 2 s" "${qa}s" "-" "-"
    fi
    r=$(awk -v a="$qa" -v b="$aa" 'BEGIN { printf "%.2f", a / b }')
    result "segmented $name: qasid vs aria2c, first mirror blocked after 2 s" "${r}x (${qa}s vs ${aa}s)" "<= 1.0x" "$(verdict "$r" 1.0 '<=')"

    # (c) mirror 4 serves one bad chunk.
    swap_root 4 "$WORK/repo-liar"
    clear_logs
    qc=$(qasid_fetch "$name" - 1 2 3 4)
    liar=$(jq -r --arg u "$(URL 4)" '.mirrors[] | select(.mirror == $u) | "\(.fate): \(.detail // "")"' "$WORK/last.json")
    bad=$(echo "$liar" | sed -n 's/.*bad chunk \([0-9]*\) .*/\1/p')
    bad="${bad:-0}"
    asked=$(cat "$WORK"/nginx*/logs/access.log | python3 -c '
import sys, re
c, size = int(sys.argv[3]), int(sys.argv[1])
start, end, n = c * size, (c + 1) * size, 0
for line in sys.stdin:
    if sys.argv[2] not in line: continue
    m = re.search(r"bytes=(\d+)-(\d*)", line)
    a, b = (int(m.group(1)), int(m.group(2) or 1 << 62) + 1) if m else (0, 1 << 62)
    n += a < end and b > start
print(n)' "$CHUNK" "$(eval echo "\$SHA_$name").zip" "$bad")
    echo "one bad chunk on mirror 4: qasid ${qc}s; mirror 4: $liar; chunk $bad asked $asked times"
    ok=FAIL
    case "$liar" in lying*"chunk $bad (bytes $((bad * CHUNK))"*) [ "$asked" -le 2 ] && ok=PASS ;; esac
    result "segmented $name: one bad chunk from one mirror" "blamed: ${liar#lying: bundle: }; chunk asked ${asked}x; verified in ${qc}s" "blamed, <= 2 fetches" "$ok"
    aria2_fetch "$name" - 1 2 3 4 >/dev/null
    sha_var="SHA_$name"
    got=$(sha256sum "$WORK/aria/$name.zip" 2>/dev/null | cut -d' ' -f1 || true)
    if [ "$got" = "${!sha_var}" ]; then
        echo "aria2c: its file matches the sha256 (it did not use the bad chunk this time), and it cannot say who lied"
    else
        echo "aria2c: finished with a file that does not match the sha256 ($got), no mirror named"
    fi
    swap_root 4 "$WORK/repo"
done
