#!/usr/bin/env bash
# Benchmark: time to a verified article through five mirrors (three tarpits that accept TCP and
# never answer, one serving tampered bundles, one good) vs a direct fetch from the good mirror
# alone, in the same run. Target: raced <= 1.5 x direct + 0.5 s.
#
#   bash benches/reader_race.sh            # 7 rounds of each
#   ROUNDS=15 bash benches/reader_race.sh
#
# Builds qasid in release mode, makes a key, a ~200 KB bundle and a repo (`qasid publish`), a
# tampered copy of the repo (one byte of the bundle flipped: same size, wrong sha256), then
# starts one python3 helper on loopback with the two static servers and three tarpits. The good
# server waits 20 ms before answering index.json, so the liar wins the index race and is asked
# for the bundle first (the worst case: its bytes are downloaded, fail the hash, and the good
# mirror is asked next). Every fetch uses a fresh state folder (no held index, no partial file)
# and a fresh output folder, with the default race window (300 ms) and hedge delay (500 ms).
# Prints each round, the medians, and the verdict; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-7}"
command -v python3 >/dev/null || { echo "python3 is needed"; exit 1; }

# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_qasid

WORK="$(mktemp -d /tmp/qasid-reader-race.XXXXXX)"
HELPER_PID=""
cleanup() {
    if [ -n "$HELPER_PID" ] && kill -0 "$HELPER_PID" 2>/dev/null; then
        kill "$HELPER_PID" 2>/dev/null || true
        wait "$HELPER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
bench_article "$WORK/article" 200000
"$QASID" bundle "$WORK/article" --key "$WORK/keys/publisher.key" --name bench \
    --out "$WORK/bench.zip" >/dev/null
"$QASID" publish "$WORK/bench.zip" --repo "$WORK/good" --key "$WORK/keys/publisher.key" >/dev/null
cp -r "$WORK/good" "$WORK/liar"
SHA="$(sha256sum "$WORK/bench.zip" | cut -d' ' -f1)"
SIZE="$(stat -c %s "$WORK/bench.zip")"
LIAR_ZIP="$(find "$WORK/liar" -name "$SHA.zip")"
python3 - "$LIAR_ZIP" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0x55
open(path, "wb").write(data)
EOF

cat >"$WORK/helper.py" <<'EOF'
# Loopback peers for the benchmark: two static servers and three tarpits. Prints their URLs.
import functools, http.server, socket, sys, threading, time

class Handler(http.server.SimpleHTTPRequestHandler):
    index_delay = 0.0
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path.endswith("/index.json"):
            time.sleep(self.index_delay)
        super().do_GET()

def serve(root, delay):
    handler = type("H", (Handler,), {"index_delay": delay})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d/" % server.server_address[1]

def tarpit():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    held = []
    def run():
        while True:
            conn, _ = sock.accept()
            held.append(conn)
    threading.Thread(target=run, daemon=True).start()
    return "http://127.0.0.1:%d/" % sock.getsockname()[1]

good = serve(sys.argv[1], 0.020)
liar = serve(sys.argv[2], 0.0)
pits = [tarpit() for _ in range(3)]
print(good, liar, *pits, flush=True)
threading.Event().wait()
EOF
python3 "$WORK/helper.py" "$WORK/good" "$WORK/liar" >"$WORK/urls" &
HELPER_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/urls" ] && break
    sleep 0.05
done
read -r GOOD LIAR PIT1 PIT2 PIT3 <"$WORK/urls"

now() { date +%s.%N; }
# fetch_once NAME MIRRORS...: prints seconds; fails unless the article was saved and verified.
fetch_once() {
    local tag="$1"
    shift
    local dir="$WORK/run-$tag"
    rm -rf "$dir"
    mkdir -p "$dir"
    local args=()
    for m in "$@"; do args+=(--mirror "$m"); done
    local start end
    start="$(now)"
    "$QASID" fetch bench "${args[@]}" --publisher "$WORK/keys/publisher.pub" \
        --state "$dir/state" --out "$dir/out" >"$dir/stdout" 2>"$dir/stderr" \
        || { cat "$dir/stderr" >&2; return 1; }
    end="$(now)"
    [ "$(sha256sum "$dir/out/bench-v1.zip" | cut -d' ' -f1)" = "$SHA" ] || return 1
    echo "$end - $start" | bc -l
}


echo "bundle: $SIZE bytes; good $GOOD, liar $LIAR, tarpits $PIT1 $PIT2 $PIT3"
echo "round  direct(s)  raced(s)"
fetch_once warm "$GOOD" >/dev/null
: >"$WORK/direct"
: >"$WORK/raced"
for i in $(seq 1 "$ROUNDS"); do
    d="$(fetch_once "d$i" "$GOOD")"
    r="$(fetch_once "r$i" "$PIT1" "$PIT2" "$LIAR" "$PIT3" "$GOOD")"
    echo "$d" >>"$WORK/direct"
    echo "$r" >>"$WORK/raced"
    printf '%5d  %9.3f  %8.3f\n' "$i" "$d" "$r"
done
D="$(median <"$WORK/direct")"
R="$(median <"$WORK/raced")"
LIMIT="$(echo "1.5 * $D + 0.5" | bc -l)"
printf 'median: direct %.3f s, raced %.3f s; target <= 1.5 x direct + 0.5 s = %.3f s\n' "$D" "$R" "$LIMIT"
printf 'RESULT | reader: 3 tarpits + 1 liar + 1 good vs direct fetch | raced %.3f s vs direct %.3f s | target <= 1.5 x direct + 0.5 s (%.3f s) | %s\n' \
    "$R" "$D" "$LIMIT" "$([ "$(echo "$R <= $LIMIT" | bc -l)" = 1 ] && echo PASS || echo FAIL)"
echo "mirror report of the last raced run:"
cat "$WORK/run-r$ROUNDS/stderr"
if [ "$(echo "$R <= $LIMIT" | bc -l)" = 1 ]; then
    echo "PASS"
else
    echo "FAIL"
    exit 1
fi
