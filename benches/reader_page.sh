#!/usr/bin/env bash
# Benchmark: the verifying reader page (`qasid reader-page`) in headless Chromium, from opening
# `page.html#read=NAME` to the verified article on screen (badge shown, images decoded), vs the
# same Chromium loading the mirror's own server-rendered page of that article (load event), in
# the same run against the same `qasid mirror` on loopback. Every load uses a fresh browser
# context: no cache, no localStorage, so the page fetches and verifies the index, its pieces and
# the whole bundle each time.
#   - the three seed articles: target page <= 1.5 x server page + 0.3 s (medians);
#   - one 20 MiB bundle (four 5 MiB photos, incompressible): target <= 2 s to verified and
#     shown; the page's longest main-thread stall is reported (the tab stays responsive when
#     it is well under a second).
#
#   bash benches/reader_page.sh            # 5 rounds of each
#   ROUNDS=9 QASID_BIN=target/debug/qasid bash benches/reader_page.sh
#
# Needs node, web/test/node_modules (`cd web/test && npm ci`) and /usr/bin/chromium. Prints
# each round, the medians and "RESULT | …" lines for scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
command -v node >/dev/null || { echo "node is needed (apt-get install nodejs npm)"; exit 1; }
[ -d web/test/node_modules/playwright-core ] || { echo "run (cd web/test && npm ci) first"; exit 1; }
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_qasid

WORK="$(mktemp -d /tmp/qasid-reader-page.XXXXXX)"
MIRROR_PID=""
cleanup() {
    if [ -n "$MIRROR_PID" ] && kill -0 "$MIRROR_PID" 2>/dev/null; then
        kill "$MIRROR_PID" 2>/dev/null || true
        wait "$MIRROR_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
KEY="$WORK/keys/publisher.key"
PUB="$WORK/keys/publisher.pub"
NAMES=()
for dir in seeds/*/; do
    name="$(basename "$dir")"
    "$QASID" bundle "$dir" --key "$KEY" --name "$name" --out "$WORK/$name.zip" >/dev/null
    NAMES+=("$name")
done
mkdir -p "$WORK/big/images"
{
    printf -- '---\ntitle: Twenty mebibytes of photos\nauthor: Bench\ndate: 2026-01-01\nlanguage: en\n---\n\n'
    printf '# Twenty mebibytes of photos\n\n'
    for i in 1 2 3 4; do printf '![photo %s](images/photo-%s.jpg)\n\n' "$i" "$i"; done
} >"$WORK/big/article.md"
for i in 1 2 3 4; do head -c 5242880 /dev/urandom >"$WORK/big/images/photo-$i.jpg"; done
"$QASID" bundle "$WORK/big" --key "$KEY" --name big --out "$WORK/big.zip" >/dev/null
"$QASID" publish "$WORK"/*.zip --repo "$WORK/repo" --key "$KEY" >/dev/null
BIG_BYTES=$(stat -c %s "$WORK/big.zip")

"$QASID" mirror --listen 127.0.0.1:0 --store "$WORK/store" --publisher "$PUB" >"$WORK/mirror.log" 2>&1 &
MIRROR_PID=$!
addr=""
for _ in $(seq 1 100); do
    addr="$(sed -n 's#^listening on http://\(.*\)$#\1#p' "$WORK/mirror.log")"
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "the mirror did not start: $(tail -3 "$WORK/mirror.log")"; exit 1; }
URL="http://$addr/"
timeout 120 "$QASID" push --repo "$WORK/repo" --to "$URL" >"$WORK/push.log" 2>&1
"$QASID" reader-page --publisher "$PUB" --mirror "$URL" --out "$WORK/page.html" >/dev/null
PAGE_BYTES=$(stat -c %s "$WORK/page.html")
HEX="$(ls "$WORK/repo/qasid/v1/publishers")"

case_json() { # case_json NAME ROUNDS
    printf '{"name":"%s","rounds":%s,"page":"file://%s/page.html#read=%s","plain":"%sread/%s/%s/1/"}' \
        "$1" "$2" "$WORK" "$1" "$URL" "$HEX" "$1"
}
{
    printf '{"rounds":%s,"cases":[' "$ROUNDS"
    for n in "${NAMES[@]}"; do printf '%s,' "$(case_json "$n" "$ROUNDS")"; done
    case_json big "$ROUNDS"
    printf ']}\n'
} >"$WORK/config.json"

echo "reader page ${PAGE_BYTES} bytes; mirror $URL; ${#NAMES[@]} seed articles and a ${BIG_BYTES}-byte bundle; $ROUNDS rounds each, fresh browser context per load"
node web/test/bench.mjs "$WORK/config.json" >"$WORK/result.json" || {
    echo "the browser run failed: $(cat "$WORK/result.json")"
    exit 1
}

python3 - "$WORK/result.json" "${NAMES[*]}" <<'EOF'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
seeds = sys.argv[2].split()
med = statistics.median
page_all, plain_all = [], []
for c in r["cases"]:
    p, q, s = med(c["page"]), med(c["plain"]), max(c["stall"])
    print(f"{c['name']:<32} page {' '.join(f'{x:.0f}' for x in c['page'])} ms (median {p:.0f});"
          f" server page {' '.join(f'{x:.0f}' for x in c['plain'])} ms (median {q:.0f}); longest stall {s:.0f} ms")
    if c["name"] in seeds:
        page_all.append(p)
        plain_all.append(q)
    else:
        big = (p, q, s)
p, q = med(page_all), med(plain_all)
bound = 1.5 * q + 300
verdict = "PASS" if p <= bound else "FAIL"
print(f"RESULT | reader page, seed articles: open to verified on screen vs server-rendered page | "
      f"{p:.0f} ms vs {q:.0f} ms ({p / q:.2f}x; bound {bound:.0f} ms) | <= 1.5x + 0.3 s | {verdict}")
p, q, s = big
verdict = "PASS" if p <= 2000 else "FAIL"
print(f"RESULT | reader page, 20 MiB bundle verified and shown | {p:.0f} ms (server page {q:.0f} ms; "
      f"longest main-thread stall {s:.0f} ms) | <= 2 s | {verdict}")
EOF
