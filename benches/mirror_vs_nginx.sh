#!/usr/bin/env bash
# Benchmark: qasid mirror vs nginx serving the same 16 KiB bundle from the same store folder.
#
#   bash benches/mirror_vs_nginx.sh            # full run (needs root for apt if tools are missing)
#   SKIP_1G=1 bash benches/mirror_vs_nginx.sh  # without the 1 GiB streaming check
#
# Installs nginx-light, wrk and curl with apt if missing, builds qasid in release mode, makes a
# key, a 16 KiB bundle and a store (published with `qasid publish`, since the store is the
# repo layout), then starts `qasid mirror` and a private nginx (own config, loopback port, pid
# file; stopped on exit) on the same folder. Runs `wrk -t2 -c64 -d10s --latency` against the
# same URL path on each, ROUNDS (3) times interleaved, and prints the medians of requests/s and
# p99 latency, the qasid/nginx ratio and the
# mirror's peak RSS (VmHWM). Then downloads a 1 GiB bundle through the mirror and prints its
# RSS before and after. Everything stays on 127.0.0.1; every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
QASID_PORT="${QASID_PORT:-18480}"
NGINX_PORT="${NGINX_PORT:-18481}"

# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_need nginx:nginx-light wrk:wrk curl:curl
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
bench_qasid

WORK="$(mktemp -d /tmp/qasid-bench.XXXXXX)"
chmod 755 "$WORK"
MIRROR_PID=""
cleanup() {
    if [ -n "$MIRROR_PID" ] && kill -0 "$MIRROR_PID" 2>/dev/null; then
        kill -TERM "$MIRROR_PID" 2>/dev/null || true
        wait "$MIRROR_PID" 2>/dev/null || true
    fi
    if [ -f "$WORK/nginx/nginx.pid" ]; then
        "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -s stop 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$QASID" keygen --unencrypted --out "$WORK/keys" >/dev/null
bench_article "$WORK/article" 15800
"$QASID" bundle "$WORK/article" --key "$WORK/keys/publisher.key" --out "$WORK/small.zip" >/dev/null
STORE="$WORK/store"
"$QASID" publish "$WORK/small.zip" --repo "$STORE" --key "$WORK/keys/publisher.key" >/dev/null
SMALL_SHA="$(sha256sum "$WORK/small.zip" | cut -d' ' -f1)"
SMALL_SIZE="$(stat -c %s "$WORK/small.zip")"
HEX="$(ls "$STORE/qasid/v1/publishers")"
URL_PATH="/qasid/v1/publishers/$HEX/bundles/$SMALL_SHA.zip"
chmod -R a+rX "$STORE"

# ---- qasid mirror ----
"$QASID" mirror --listen "127.0.0.1:$QASID_PORT" --store "$STORE" \
    --publisher "$WORK/keys/publisher.pub" 2>"$WORK/mirror.log" &
MIRROR_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/mirror.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening on" "$WORK/mirror.log" || { cat "$WORK/mirror.log"; exit 1; }

# ---- nginx, private config ----
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types { application/zip zip; application/json json; }
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $STORE;
        location ~ /\. { deny all; }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"

for port in "$QASID_PORT" "$NGINX_PORT"; do
    got="$(curl -fsS "http://127.0.0.1:$port$URL_PATH" | sha256sum | cut -d' ' -f1)"
    [ "$got" = "$SMALL_SHA" ] || { echo "port $port serves the wrong bytes"; exit 1; }
done

rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# Prints "requests/s p99-in-ms" for one wrk run.
bench() {
    local out
    out="$(wrk -t2 -c64 -d"$DURATION" --latency "$1")"
    echo "$out" >>"$WORK/wrk.log"
    local rps p99
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    # wrk prints the unit it chose (us, ms or s): in ms.
    p99="$(awk '$1 == "99%" { v = $2 + 0; u = $2; gsub(/[0-9.]/, "", u);
        printf "%.2f", (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }' <<<"$out")"
    echo "$rps $p99"
}

echo "bundle: $SMALL_SIZE bytes, GET $URL_PATH"
echo "machine: $(nproc) cores; wrk -t2 -c64 -d$DURATION on loopback, $ROUNDS runs a side, medians"
# Warm both (page cache, connection setup).
wrk -t2 -c64 -d2s "http://127.0.0.1:$NGINX_PORT$URL_PATH" >/dev/null
wrk -t2 -c64 -d2s "http://127.0.0.1:$QASID_PORT$URL_PATH" >/dev/null
# ROUNDS runs a side, interleaved (nginx, qasid, nginx, ...), because these machines are shared
# and one 10 s run moves by several per cent; each side's median req/s and median p99.
nginx_rps=() nginx_p99=() qasid_rps=() qasid_p99=()
for _ in $(seq "$ROUNDS"); do
    read -r rps p99 < <(bench "http://127.0.0.1:$NGINX_PORT$URL_PATH")
    nginx_rps+=("$rps") nginx_p99+=("$p99")
    read -r rps p99 < <(bench "http://127.0.0.1:$QASID_PORT$URL_PATH")
    qasid_rps+=("$rps") qasid_p99+=("$p99")
done
echo "nginx runs: ${nginx_rps[*]} req/s; qasid runs: ${qasid_rps[*]} req/s"
NGINX_RPS="$(median "${nginx_rps[@]}")" NGINX_P99="$(median "${nginx_p99[@]}")ms"
QASID_RPS="$(median "${qasid_rps[@]}")" QASID_P99="$(median "${qasid_p99[@]}")ms"
PEAK="$(rss_kib "$MIRROR_PID" VmHWM)"
RATIO="$(awk -v a="$QASID_RPS" -v b="$NGINX_RPS" 'BEGIN { printf "%.2f", a / b }')"
printf '%-8s %12s req/s   p99 %s\n' nginx "$NGINX_RPS" "$NGINX_P99"
printf '%-8s %12s req/s   p99 %s\n' qasid "$QASID_RPS" "$QASID_P99"
echo "ratio qasid/nginx: $RATIO"
echo "RESULT | mirror GET 16 KiB, wrk -t2 -c64: req/s vs nginx | ${RATIO}x (p99 qasid $QASID_P99, nginx $NGINX_P99) | target >= 1.0x | $(awk -v r="$RATIO" 'BEGIN { print (r >= 1.0) ? "PASS" : "FAIL" }')"
echo "qasid mirror peak RSS (VmHWM) after load: $((PEAK / 1024)) MiB ($PEAK KiB)"
echo "RESULT | mirror peak RSS under that load | $((PEAK / 1024)) MiB | target <= 64 MiB | $([ $((PEAK / 1024)) -le 64 ] && echo PASS || echo FAIL)"

if [ "${SKIP_1G:-0}" = "1" ]; then
    exit 0
fi

# ---- 1 GiB download through the mirror ----
mkdir -p "$WORK/big/files"
cat >"$WORK/big/article.md" <<'EOF'
---
title: One gigabyte
author: Bench
date: 2026-01-01
language: en
---

A large attachment.
EOF
head -c $((1 << 30)) /dev/urandom >"$WORK/big/files/video.mp4"
"$QASID" bundle "$WORK/big" --key "$WORK/keys/publisher.key" --out "$WORK/big.zip" >/dev/null
rm -rf "$WORK/big"
"$QASID" publish "$WORK/big.zip" --repo "$STORE" --key "$WORK/keys/publisher.key" >/dev/null
BIG_SHA="$(sha256sum "$WORK/big.zip" | cut -d' ' -f1)"
rm -f "$WORK/big.zip"
chmod -R a+rX "$STORE"
BEFORE="$(rss_kib "$MIRROR_PID" VmRSS)"
START="$(date +%s.%N)"
GOT="$(curl -fsS "http://127.0.0.1:$QASID_PORT/qasid/v1/publishers/$HEX/bundles/$BIG_SHA.zip" | sha256sum | cut -d' ' -f1)"
END="$(date +%s.%N)"
AFTER="$(rss_kib "$MIRROR_PID" VmRSS)"
[ "$GOT" = "$BIG_SHA" ] || { echo "1 GiB download: wrong bytes"; exit 1; }
echo "1 GiB download: $(awk -v s="$START" -v e="$END" 'BEGIN { printf "%.1f", e - s }') s," \
    "mirror RSS before $((BEFORE / 1024)) MiB, after $((AFTER / 1024)) MiB," \
    "peak (VmHWM) $(($(rss_kib "$MIRROR_PID" VmHWM) / 1024)) MiB"
echo "RESULT | mirror 1 GiB download: RSS before -> after | $((BEFORE / 1024)) -> $((AFTER / 1024)) MiB | flat (streams) | $([ $(((AFTER - BEFORE) / 1024)) -le 16 ] && echo PASS || echo FAIL)"
