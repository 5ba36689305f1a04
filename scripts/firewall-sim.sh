#!/usr/bin/env bash
# Firewall simulation: real qasid mirrors and a real reader on either side of a censor that
# routes between network namespaces and blocks with nftables and tc, as national firewalls do
# (Pakistan 2024: address blocking, injected resets, throttling). See docs/FIREWALL-SIM.md.
#
#   sudo bash scripts/firewall-sim.sh           # builds qasid (release) unless QASID_BIN is set
#   QASID_BIN=target/debug/qasid sudo -E bash scripts/firewall-sim.sh
#
# Needs root, iproute2 (ip, tc), nftables and jq; prints "SKIPPED: ..." and exits 0 where
# network namespaces (or veth pairs, or nftables in the kernel) are unavailable. Exits 1 if any
# scenario leaves the reader or the inside mirror without every article, verified.
#
# Topology (one /24 per side; each mirror has its own address, so the censor blocks by address):
#
#   outside ns                         censor ns                     country ns
#   origin 10.99.1.10  m1 .11  m2 .12  10.99.1.1 | ip_forward |      reader        10.99.2.10
#   m3 .13  m4 .14  m5 .15  publisher  nftables, tc on the     10.99.2.1  inside mirror 10.99.2.20
#                                       country-facing link
#
# The publisher pushes to the origin; m1..m5 sync from it; the inside mirror syncs from all six
# (--upstream each); the reader was given m1 and m2 and learns the rest from the signed index.
# The censorship escalates scenario by scenario (rules accumulate), and every scenario
# publishes one new article:
#   a  baseline, nothing blocked
#   b  DROP to origin and m3 (SYNs vanish: a tarpit)
#   c  REJECT with tcp reset to m4 and to the given mirror the reader did not use in (a)
#   d  m5 throttled: 300 ms delay and 512 kbit/s
#   e  DROP to the mirror the reader used in (a): only the throttled m5, learned from the
#      signed index, is left for the reader and the inside mirror
#   f  every connection to m5 is reset once m5 has sent 16 KiB, like the per-connection byte
#      caps some national firewalls apply (skipped, saying so, where conntrack accounting is
#      unavailable; FWSIM_CUT=0 leaves it out).
# Every process, namespace and link it creates is removed on exit, whatever the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reader and sync timeouts for a seconds-scale run (the defaults suit real networks).
READER_FLAGS=(--race-window 300ms --hedge-delay 1s --connect-timeout 2s --timeout 5s)
SYNC_FLAGS=(--connect-timeout 2s --read-timeout 5s)
THROTTLE_DELAY_MS=300
THROTTLE_RATE=512kbit
PHOTO_BYTES=49152 # incompressible bytes per scenario article: ~1 s at the throttled rate
CUT_BYTES=16384   # FWSIM_CUT: connections to a mirror reset once it has sent this much

skip() {
    echo "SKIPPED: $*"
    exit 0
}
die() {
    echo "firewall-sim: error: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || skip "network namespaces unavailable (needs root; running as uid $(id -u))"
for tool in ip tc nft jq timeout; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found (Debian: apt-get install iproute2 nftables jq coreutils)"
done

# ---- everything this script creates, removed by cleanup ----
P="qfw$$" # prefix of every namespace and link name (link names stay under 15 bytes)
NAMESPACES=()
LINKS=()
PIDS=()
WORK=""
PROBE_ERR=""
cleanup() {
    local rc=$?
    set +e
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
    for i in "${NAMESPACES[@]}"; do ip netns del "$i" 2>/dev/null; done
    for i in "${LINKS[@]}"; do
        ip link show "$i" >/dev/null 2>&1 && ip link del "$i" 2>/dev/null
    done
    if [ "$rc" -ne 0 ] && [ -n "$WORK" ] && [ -d "$WORK" ]; then
        for i in "$WORK"/logs/*.log; do
            [ -s "$i" ] || continue
            echo "---- last lines of $(basename "$i")" >&2
            tail -n 15 "$i" >&2
        done
    fi
    [ -n "$PROBE_ERR" ] && rm -f "$PROBE_ERR"
    if [ -n "$WORK" ] && [ -n "${FWSIM_KEEP:-}" ]; then
        echo "kept $WORK (FWSIM_KEEP)" >&2
    elif [ -n "$WORK" ]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- capability probe: namespaces, veth, nftables, netem ----
PROBE_ERR="$(mktemp)"
if ! ip netns add "$P-probe" 2>"$PROBE_ERR"; then
    reason="$(tr '\n' ' ' <"$PROBE_ERR")"
    skip "network namespaces unavailable (ip netns add: ${reason% })"
fi
NAMESPACES+=("$P-probe")
if ! ip -n "$P-probe" link add "${P}pa" type veth peer name "${P}pb" 2>"$PROBE_ERR"; then
    skip "network namespaces unavailable (veth pair: $(tr '\n' ' ' <"$PROBE_ERR"))"
fi
if ! ip netns exec "$P-probe" nft add table inet probe 2>"$PROBE_ERR"; then
    skip "nftables unavailable in this kernel ($(tr '\n' ' ' <"$PROBE_ERR"))"
fi
ip -n "$P-probe" link set "${P}pa" up
# Without netem (some minimal kernels), the delay comes from a relay on the censor instead.
if ip netns exec "$P-probe" tc qdisc add dev "${P}pa" root netem delay 1ms 2>/dev/null; then
    DELAY_MODE=netem
else
    DELAY_MODE=relay
    command -v python3 >/dev/null 2>&1 || die "the kernel has no netem and python3 (for the delay relay) is missing"
fi
rm -f "$PROBE_ERR"
ip netns del "$P-probe"
NAMESPACES=()

if [ -n "${QASID_BIN:-}" ]; then
    QASID="$(realpath "$QASID_BIN")"
else
    cargo build --release --quiet --locked
    QASID="$PWD/target/release/qasid"
fi
[ -x "$QASID" ] || die "no qasid binary at $QASID"

WORK="$(mktemp -d /tmp/qasid-fwsim.XXXXXX)"
mkdir -p "$WORK/logs"
START_ALL=$(date +%s.%N)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS.
wait_for() {
    local limit="$1" what="$2"
    shift 2
    local deadline
    deadline=$(($(date +%s%N) + limit * 1000000000))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s%N)" -lt "$deadline" ] || {
            echo "firewall-sim: timed out after ${limit}s waiting for $what" >&2
            return 1
        }
        sleep 0.1
    done
}

# ---- network ----
NS_OUT="$P-out"
NS_CEN="$P-cen"
NS_IN="$P-in"
CEN_OUT="${P}co" # censor side of the outside link
OUT_IF="${P}oc"  # outside side
CEN_IN="${P}ci"  # censor side of the country link: tc shapes traffic towards the country here
IN_IF="${P}ic"   # country side

for ns in "$NS_OUT" "$NS_CEN" "$NS_IN"; do
    ip netns add "$ns"
    NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
done
ip link add "$CEN_OUT" type veth peer name "$OUT_IF"
LINKS+=("$CEN_OUT" "$OUT_IF")
ip link add "$CEN_IN" type veth peer name "$IN_IF"
LINKS+=("$CEN_IN" "$IN_IF")
ip link set "$CEN_OUT" netns "$NS_CEN"
ip link set "$CEN_IN" netns "$NS_CEN"
ip link set "$OUT_IF" netns "$NS_OUT"
ip link set "$IN_IF" netns "$NS_IN"

declare -A ADDR=(
    [origin]=10.99.1.10 [m1]=10.99.1.11 [m2]=10.99.1.12
    [m3]=10.99.1.13 [m4]=10.99.1.14 [m5]=10.99.1.15
    [reader]=10.99.2.10 [inside]=10.99.2.20
)
OUTSIDE=(origin m1 m2 m3 m4 m5)
url() { echo "http://${ADDR[$1]}:8080/"; }

ip -n "$NS_CEN" addr add 10.99.1.1/24 dev "$CEN_OUT"
ip -n "$NS_CEN" addr add 10.99.2.1/24 dev "$CEN_IN"
for m in "${OUTSIDE[@]}"; do ip -n "$NS_OUT" addr add "${ADDR[$m]}/24" dev "$OUT_IF"; done
ip -n "$NS_IN" addr add "${ADDR[reader]}/24" dev "$IN_IF"
ip -n "$NS_IN" addr add "${ADDR[inside]}/24" dev "$IN_IF"
for pair in "$NS_CEN:$CEN_OUT" "$NS_CEN:$CEN_IN" "$NS_OUT:$OUT_IF" "$NS_IN:$IN_IF"; do
    ip -n "${pair%%:*}" link set "${pair#*:}" up
done
ip -n "$NS_OUT" route add default via 10.99.1.1
ip -n "$NS_IN" route add default via 10.99.2.1
# /proc/sys/net is per namespace (no sysctl binary needed: procps may be missing).
ip netns exec "$NS_CEN" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'

# The censor: address sets the scenarios fill. Forwarded traffic only; the censor's own relay
# (DELAY_MODE=relay) talks to m5 from the censor itself.
ip netns exec "$NS_CEN" nft -f - <<EOF
table inet censor {
    set tarpit { type ipv4_addr; }
    set rst { type ipv4_addr; }
    set cut { type ipv4_addr; }
    chain forward {
        type filter hook forward priority 0; policy accept;
        ip daddr @tarpit drop
        ip daddr @rst meta l4proto tcp reject with tcp reset
        ct original ip daddr @cut ct reply bytes > $CUT_BYTES meta l4proto tcp reject with tcp reset
    }
    # The delay relay's own connections to m5 (DELAY_MODE=relay): the relay passes a cut on.
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr @cut ct reply bytes > $CUT_BYTES meta l4proto tcp reject with tcp reset
    }
}
EOF
# Byte counters on connections, for the "cut" set (scenario f); from the start, so that
# connections opened before the cut are counted too.
CUT_READY=yes
ip netns exec "$NS_CEN" sh -c 'echo 1 >/proc/sys/net/netfilter/nf_conntrack_acct' 2>/dev/null ||
    CUT_READY=no
censor_add() { ip netns exec "$NS_CEN" nft add element inet censor "$1" "{ $2 }"; }

if [ "$DELAY_MODE" = relay ]; then
    # m5's traffic from the country goes through this relay from the start (no delay until
    # scenario d), so connections opened before the throttle get it too, as with netem.
    echo 0 >"$WORK/relay-delay"
    cat >"$WORK/relay.py" <<'EOF'
# Delaying TCP relay for kernels without netem: forwards LISTEN -> TARGET and holds every
# chunk going back to the client for the number of seconds in DELAY_FILE (read per chunk).
import asyncio, sys

listen_host, listen_port, target_host, target_port, delay_file = sys.argv[1:6]

def delay():
    try:
        with open(delay_file) as f:
            return float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0

async def pump(src, dst, delayed):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(maxsize=64)
    async def send():
        while (item := await queue.get()) is not None:
            due, data = item
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    sender = asyncio.create_task(send())
    try:
        while data := await src.read(65536):
            await queue.put((loop.time() + (delay() if delayed else 0.0), data))
    except (ConnectionError, OSError):
        pass
    await queue.put(None)
    try:
        await sender
    except (ConnectionError, OSError):
        pass

async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.wait_for(
            asyncio.open_connection(target_host, int(target_port)), 5)
    except (OSError, asyncio.TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pump(client_r, up_w, False), pump(up_r, client_w, True))
    for w in (up_w, client_w):
        w.close()

async def main():
    server = await asyncio.start_server(handle, listen_host, int(listen_port))
    print("relay listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
    ip netns exec "$NS_CEN" python3 "$WORK/relay.py" 10.99.2.1 9080 "${ADDR[m5]}" 8080 \
        "$WORK/relay-delay" >"$WORK/logs/relay.log" 2>&1 &
    PIDS+=($!)
    wait_for 10 "the delay relay" grep -q "relay listening" "$WORK/logs/relay.log"
    ip netns exec "$NS_CEN" nft -f - <<EOF
table ip censor_nat {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "$CEN_IN" ip daddr ${ADDR[m5]} tcp dport 8080 dnat to 10.99.2.1:9080
    }
}
EOF
fi

throttle_m5() {
    local c=(ip netns exec "$NS_CEN" tc)
    "${c[@]}" qdisc add dev "$CEN_IN" root handle 1: htb default 10
    "${c[@]}" class add dev "$CEN_IN" parent 1: classid 1:10 htb rate 10gbit quantum 60000
    "${c[@]}" class add dev "$CEN_IN" parent 1: classid 1:20 htb rate "$THROTTLE_RATE" \
        ceil "$THROTTLE_RATE" quantum 1514
    if [ "$DELAY_MODE" = netem ]; then
        "${c[@]}" qdisc add dev "$CEN_IN" parent 1:20 handle 20: netem delay "${THROTTLE_DELAY_MS}ms" limit 10000
    else
        awk -v ms="$THROTTLE_DELAY_MS" 'BEGIN { print ms / 1000 }' >"$WORK/relay-delay"
    fi
    "${c[@]}" filter add dev "$CEN_IN" parent 1: protocol ip prio 1 u32 \
        match ip src "${ADDR[m5]}/32" flowid 1:20
}

# ---- publisher, mirrors ----
"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
PUB="$WORK/keys/publisher.pub"
KEY="$WORK/keys/publisher.key"
REPO="$WORK/repo"
ANNOUNCE=()
for m in "${OUTSIDE[@]}"; do ANNOUNCE+=(--mirror "$(url "$m")"); done

# start_mirror NAME NAMESPACE ARGS...: a real `qasid mirror` on NAME's address, port 8080.
start_mirror() {
    local name="$1" ns="$2"
    shift 2
    ip netns exec "$ns" "$QASID" mirror --listen "${ADDR[$name]}:8080" --store "$WORK/store-$name" \
        --publisher "$PUB" --shutdown-grace 2s "$@" >"$WORK/logs/mirror-$name.log" 2>&1 &
    PIDS+=($!)
    local pid=$!
    wait_for 10 "mirror $name to listen" grep -q "listening on" "$WORK/logs/mirror-$name.log" ||
        { kill -0 "$pid" 2>/dev/null || echo "mirror $name exited" >&2; return 1; }
}

index_file() { echo "$1/qasid/v1/publishers/$HEX/index.json"; }
# has_current NAME: NAME's store holds the index the publisher signed last (a store installs an
# index only once every object it lists is present and verified).
has_current() { cmp -s "$(index_file "$REPO")" "$(index_file "$WORK/store-$1")"; }

all_outside_current() {
    local m
    for m in "${OUTSIDE[@]}"; do has_current "$m" || return 1; done
}

# publish_article DIR NAME: bundle, publish (index announces m1..m5 and the origin), push.
publish_article() {
    "$QASID" bundle "$1" --key "$KEY" --name "$2" --out "$WORK/bundles/$2.zip" >/dev/null
    publish_bundles "$WORK/bundles/$2.zip"
}
publish_bundles() {
    "$QASID" publish "$@" --repo "$REPO" --key "$KEY" --expires 1d "${ANNOUNCE[@]}" >/dev/null
    timeout 30 ip netns exec "$NS_OUT" "$QASID" push --repo "$REPO" --to "$(url origin)" \
        >"$WORK/logs/push.log" 2>&1 || die "push to the origin failed: $(cat "$WORK/logs/push.log")"
}

mkdir -p "$WORK/bundles"
seed_bundles=()
for dir in seeds/*/; do
    name="$(basename "$dir")"
    "$QASID" bundle "$dir" --key "$KEY" --out "$WORK/bundles/$name.zip" >/dev/null
    seed_bundles+=("$WORK/bundles/$name.zip")
done
start_mirror origin "$NS_OUT"
publish_bundles "${seed_bundles[@]}"
HEX="$(ls "$REPO/qasid/v1/publishers")"
# Mirrors start after the origin holds the seeds, so no first round fails into backoff.
for m in m1 m2 m3 m4 m5; do
    start_mirror "$m" "$NS_OUT" --upstream "$(url origin)" --sync-interval 1s "${SYNC_FLAGS[@]}"
done
wait_for 30 "m1..m5 to sync the seeds from the origin" all_outside_current
INSIDE_UPSTREAMS=()
for m in "${OUTSIDE[@]}"; do INSIDE_UPSTREAMS+=(--upstream "$(url "$m")"); done
# Upstream URLs in /metrics (hidden by default) so the report can name them.
start_mirror inside "$NS_IN" "${INSIDE_UPSTREAMS[@]}" --sync-interval 2s --metrics-upstream-urls true \
    "${SYNC_FLAGS[@]}"
wait_for 30 "the inside mirror to sync the seeds" has_current inside

# ---- scenarios ----
READER_STATE="$WORK/reader-state"
CHECK_STATE="$WORK/check-state"
# {"<mirror URL>": "<role>"} for jq, to name mirrors in the report.
NAMES_JSON="{$(for m in "${OUTSIDE[@]}" inside; do printf '"%s":"%s",' "$(url "$m")" "$m"; done | sed 's/,$//')}"

make_article() { # make_article SCENARIO TITLE -> prints the article folder
    local dir="$WORK/articles/fw-$1"
    mkdir -p "$dir/images"
    cat >"$dir/article.md" <<EOF
---
title: "$2"
author: Firewall simulation
date: 2026-11-28
language: en
---

# $2

![photo](images/photo.bin)
EOF
    head -c "$PHOTO_BYTES" /dev/urandom >"$dir/images/photo.bin"
    echo "$dir"
}

# reader_fetch SCENARIO NAME: `qasid fetch NAME` in the country until a verified copy is saved
# (each attempt bounded; at most 45 s). Sets R_TIME, R_TRIES, R_JSON (the last attempt's).
reader_fetch() {
    local tag="$1" name="$2" start deadline rc
    start=$(now)
    deadline=$(($(date +%s) + 45))
    R_TRIES=0
    R_JSON="$WORK/reader-$tag.json"
    while :; do
        R_TRIES=$((R_TRIES + 1))
        rc=0
        timeout 40 ip netns exec "$NS_IN" "$QASID" fetch "$name" --mirror "$(url m1)" --mirror "$(url m2)" \
            --publisher "$PUB" --state "$READER_STATE" --out "$WORK/reader-out/$tag" --json \
            "${READER_FLAGS[@]}" >"$R_JSON" 2>"$WORK/logs/reader-$tag-$R_TRIES.log" || rc=$?
        if [ "$rc" -eq 0 ] && [ "$(jq -r .ok "$R_JSON")" = true ]; then break; fi
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.5
    done
    R_TIME=$(elapsed "$start" "$(now)")
    R_RC=$rc
}

# check_inside: a fresh copy of the inside mirror, made over HTTP by `qasid sync --once` from it
# alone (which verifies the index and every bundle), must hold the publisher's latest sequence
# and every listed bundle, byte for byte. Sets I_RESULT ("N/N verified" or why not).
check_inside() {
    local tag="$1"
    local copy="$WORK/inside-copy-$tag" expect_seq got_seq listed ok=0 total sha
    rm -rf "$copy"
    if ! timeout 60 ip netns exec "$NS_IN" "$QASID" sync --once --store "$copy" --publisher "$PUB" \
        --upstream "$(url inside)" "${SYNC_FLAGS[@]}" --json >"$WORK/inside-sync-$tag.json" \
        2>"$WORK/logs/inside-check-$tag.log"; then
        I_RESULT="copy failed"
        return 1
    fi
    expect_seq=$("$QASID" index show --repo "$REPO" --publisher "$PUB" --state "$CHECK_STATE-repo" --json | jq .sequence)
    "$QASID" index show --repo "$copy" --publisher "$PUB" --state "$CHECK_STATE" --json >"$WORK/inside-index-$tag.json"
    got_seq=$(jq .sequence "$WORK/inside-index-$tag.json")
    listed=$(jq -r '.current[] | .sha256' "$WORK/inside-index-$tag.json")
    total=$(jq '.current | length' "$WORK/inside-index-$tag.json")
    for sha in $listed; do
        [ "$(sha256sum <"$copy/qasid/v1/publishers/$HEX/bundles/$sha.zip" | cut -d' ' -f1)" = "$sha" ] &&
            ok=$((ok + 1))
    done
    I_RESULT="$ok/$total verified"
    [ "$got_seq" = "$expect_seq" ] || { I_RESULT="$I_RESULT, sequence $got_seq of $expect_seq"; return 1; }
    [ "$ok" -eq "$total" ] && [ "$total" -eq "$ARTICLES" ]
}

ARTICLES=${#seed_bundles[@]}
FAILED=0
ROWS=()
FATES=()
USED_IN_A=""
OTHER_GIVEN=""

run_scenario() {
    local tag="$1" desc="$2" title="$3" dir t0 served sha_saved sha_expected verdict=ok inside_time
    dir="$(make_article "$tag" "$title")"
    ARTICLES=$((ARTICLES + 1))
    publish_article "$dir" "fw-$tag"
    t0=$(now)
    wait_for 30 "m1..m5 to sync fw-$tag" all_outside_current || verdict=FAIL

    # The inside mirror is watched while the reader runs: they are independent.
    (wait_for 60 "the inside mirror to hold fw-$tag" has_current inside && now >"$WORK/inside-done-$tag") &
    local watcher=$!
    PIDS+=("$watcher")
    reader_fetch "$tag" "fw-$tag"
    served=$(jq -r --argjson n "$NAMES_JSON" '.article.mirror // "" | $n[.] // .' "$R_JSON" || true)
    sha_saved=$(sha256sum "$WORK/reader-out/$tag/fw-$tag-v1.zip" 2>/dev/null | cut -d' ' -f1 || true)
    sha_expected=$(sha256sum <"$WORK/bundles/fw-$tag.zip" | cut -d' ' -f1)
    if [ "$R_RC" -ne 0 ] || [ "$sha_saved" != "$sha_expected" ]; then
        verdict=FAIL
        served="${served:-none} (exit $R_RC)"
    fi
    if jq -e '.mirrors[] | select(.fate == "lying")' "$R_JSON" >/dev/null; then
        verdict=FAIL # nobody here lies: a "lying" fate is a misdiagnosed network failure
    fi
    FATES+=("$tag  $(jq -r --argjson n "$NAMES_JSON" \
        '[.mirrors[] | "\($n[.mirror] // .mirror) \(.fate)"] | join(" · ")' "$R_JSON" || echo "no report")")

    wait "$watcher" || true # bounded: the watcher gives up after 60 s
    if [ -s "$WORK/inside-done-$tag" ]; then
        inside_time="$(elapsed "$t0" "$(cat "$WORK/inside-done-$tag")")s"
    else
        inside_time="not in 60s"
        verdict=FAIL
    fi
    check_inside "$tag" || verdict=FAIL

    if [ "$tag" = a ]; then
        USED_IN_A="$served"
        case "$USED_IN_A" in
        m1) OTHER_GIVEN=m2 ;;
        m2) OTHER_GIVEN=m1 ;;
        *) verdict=FAIL ;;
        esac
    fi
    if [ "$tag" = e ] && [ "$served" = "$USED_IN_A" ]; then
        verdict=FAIL # the blocked mirror cannot have served it
    fi
    [ "$verdict" = ok ] || FAILED=1
    ROWS+=("$(printf '%-2s %-44s %8ss %5s  %-10s %-16s %9s  %s' "$tag" "$desc" "$R_TIME" "$R_TRIES" \
        "$served" "$I_RESULT" "$inside_time" "$verdict")")
    echo "scenario $tag: $verdict (reader ${R_TIME}s via $served; inside mirror $I_RESULT in $inside_time)"
}

print_table() {
    printf '%-2s %-44s %9s %5s  %-10s %-16s %9s  %s\n' "" "censor" "reader" "tries" "served by" \
        "inside mirror" "inside in" "result"
    local row
    for row in "${ROWS[@]}"; do echo "$row"; done
}

run_scenario a "baseline, nothing blocked" "Baseline: nothing blocked"
if [ -z "$OTHER_GIVEN" ]; then
    print_table
    die "the baseline failed, so the later scenarios (built on the mirror it used) cannot run"
fi
censor_add tarpit "${ADDR[origin]}, ${ADDR[m3]}"
run_scenario b "DROP origin, m3 (tarpit)" "Origin blocked by address"
censor_add rst "${ADDR[m4]}, ${ADDR[$OTHER_GIVEN]}"
run_scenario c "+ RST m4, $OTHER_GIVEN (given, unused in a)" "Resets injected"
throttle_m5
run_scenario d "+ m5 ${THROTTLE_DELAY_MS}ms, $THROTTLE_RATE ($DELAY_MODE)" "Throttled mirror"
censor_add tarpit "${ADDR[$USED_IN_A]}"
run_scenario e "+ DROP $USED_IN_A (the reader's mirror in a)" "The reader's mirror blocked"
if [ "${FWSIM_CUT:-1}" = 0 ]; then
    echo "scenario f left out (FWSIM_CUT=0)"
elif [ "$CUT_READY" != yes ]; then
    echo "SKIPPED scenario f: this kernel offers no conntrack byte accounting (net.netfilter.nf_conntrack_acct)"
else
    censor_add cut "${ADDR[m5]}"
    run_scenario f "+ m5 reset after 16 KiB per connection" "Connections cut after 16 KiB"
fi

# ---- report ----
metrics="$(timeout 5 ip netns exec "$NS_IN" bash -c \
    'exec 3<>/dev/tcp/10.99.2.20/8080; printf "GET /metrics HTTP/1.0\r\nHost: inside\r\n\r\n" >&3; cat <&3' || true)"
echo
echo "firewall simulation: $ARTICLES articles, reader given m1 and m2, inside mirror upstreams origin and m1..m5;"
echo "censorship accumulates a→e; delay via $DELAY_MODE; reader ${READER_FLAGS[*]}"
print_table
echo
echo "reader's mirror fates (fetch --json):"
for f in "${FATES[@]}"; do echo "  $f"; done
echo
echo "inside mirror /metrics, sync failures by upstream and reason:"
grep -E '^qasid_sync_upstream_failures_total' <<<"$metrics" |
    sed -E "s#http://10\.99\.1\.10:8080/#origin#; s#http://10\.99\.1\.1([1-5]):8080/#m\1#; s/^/  /" || echo "  (none)"
# Nobody here sends wrong bytes: content refused as not authentic would be a network failure
# misread as a lie.
refused=$(awk '/^qasid_verification_failures_total/ { n += $NF } END { print n + 0 }' <<<"$metrics")
echo "inside mirror /metrics, content refused as not authentic: $refused"
if [ -z "$metrics" ] || [ "$refused" -ne 0 ]; then FAILED=1; fi
echo
echo "censor's throttle class for m5 (tc -s, towards the country):"
ip netns exec "$NS_CEN" tc -s class show dev "$CEN_IN" classid 1:20 | sed -n 's/^ *Sent/  sent/p'
echo
echo "total $(elapsed "$START_ALL" "$(now)")s"
if [ "$FAILED" -ne 0 ]; then
    echo "FAIL: a scenario left the reader or the inside mirror without every article verified"
    exit 1
fi
echo "PASS: every scenario: the reader saved the new article, verified; the inside mirror held all $ARTICLES, verified"
