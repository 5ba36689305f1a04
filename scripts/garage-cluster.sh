#!/usr/bin/env bash
# A three-node Garage cluster on 127.0.0.1 for tests and benchmarks (docs/OBJECT-STORAGE.md):
# replication factor 3, a layout assigned and applied, a bucket and an access key created, the
# key allowed to read and write the bucket, website access enabled, all with Garage's own CLI.
# Everything lives in DIR (configs, data, logs, pids); every wait is bounded.
#
#   scripts/garage-cluster.sh DIR start [--owner PID]  start, set up, print the environment
#   scripts/garage-cluster.sh DIR stop                 stop every process this DIR started
#   scripts/garage-cluster.sh DIR node-stop N          stop node N (1-3), as a crash would
#   scripts/garage-cluster.sh DIR node-start N         start node N again, wait until it is back
#   scripts/garage-cluster.sh DIR bucket NAME          one more bucket (same key, website on)
#   scripts/garage-cluster.sh DIR alias NAME ALIAS     a global alias for bucket NAME (e.g.
#                                                      localhost: its website at http://localhost:PORT/)
#   scripts/garage-cluster.sh DIR cors NAME            CORS on bucket NAME's website (any origin,
#                                                      GET/HEAD, Range): the browser reader reads it
#   scripts/garage-cluster.sh DIR env [NAME]           print the environment (for bucket NAME)
#
# The environment is printed as `export KEY=VALUE` lines (eval them): AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (node 1's S3 API), GARAGE_BUCKET,
# GARAGE_WEB_URL (node 1's website endpoint: send `Host: <bucket>` or use
# <bucket>.web.garage), GARAGE_WEB_ROOT_DOMAIN, GARAGE_S3_URLS and GARAGE_WEB_URLS (all nodes).
# With --owner PID a watchdog stops the cluster and removes DIR when PID exits (tests: no Garage
# outlives them).
# GARAGE (default: garage on PATH) is the binary; it must be Garage 2.x.
set -euo pipefail

GARAGE=${GARAGE:-garage}
NODES=3
REGION=garage
WEB_ROOT_DOMAIN=.web.garage
# Bounds: a cold start of three nodes takes 2-5 s on a loaded 2-core machine.
BOOT_SECONDS=60

usage() {
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "garage-cluster: $*" >&2
    exit 1
}

[ $# -ge 2 ] || usage
DIR=$1
CMD=$2
shift 2

cfg() { echo "$DIR/node$1/garage.toml"; }
g() { "$GARAGE" -c "$(cfg 1)" "$@"; }
port() { sed -n "${1}p" "$DIR/ports"; }
# Node N's ports: rpc, s3, web, admin, in that order, from line 4(N-1)+1 of DIR/ports.
rpc_port() { port $((4 * ($1 - 1) + 1)); }
s3_port() { port $((4 * ($1 - 1) + 2)); }
web_port() { port $((4 * ($1 - 1) + 3)); }
admin_port() { port $((4 * ($1 - 1) + 4)); }

# Seconds since the epoch with a fraction, for bounded waits.
deadline_after() { echo $(($(date +%s) + $1)); }
before() { [ "$(date +%s)" -lt "$1" ]; }

# Free loopback ports, all bound at once so the kernel hands out distinct ones.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

write_config() {
    local n=$1 secret=$2 token=$3
    mkdir -p "$DIR/node$n/meta" "$DIR/node$n/data"
    # fsync off: test data on a shared disk; replication is what the tests exercise.
    cat >"$(cfg "$n")" <<EOF
metadata_dir = "$DIR/node$n/meta"
data_dir = "$DIR/node$n/data"
db_engine = "lmdb"
metadata_fsync = false
data_fsync = false
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_public_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$(s3_port "$n")"
root_domain = ".s3.garage"

[s3_web]
bind_addr = "127.0.0.1:$(web_port "$n")"
root_domain = "$WEB_ROOT_DOMAIN"
index = "index.html"

[admin]
api_bind_addr = "127.0.0.1:$(admin_port "$n")"
admin_token = "$token"
EOF
    chmod 600 "$(cfg "$n")"
}

start_node() {
    local n=$1
    if [ -f "$DIR/node$n/pid" ] && kill -0 "$(cat "$DIR/node$n/pid")" 2>/dev/null; then
        return 0
    fi
    RUST_LOG=${GARAGE_LOG:-warn} setsid "$GARAGE" -c "$(cfg "$n")" server \
        >>"$DIR/node$n/log" 2>&1 </dev/null &
    echo $! >"$DIR/node$n/pid"
}

stop_node() {
    local n=$1 pid deadline
    [ -f "$DIR/node$n/pid" ] || return 0
    pid=$(cat "$DIR/node$n/pid")
    rm -f "$DIR/node$n/pid"
    kill -KILL "$pid" 2>/dev/null || return 0
    deadline=$(deadline_after 10)
    while kill -0 "$pid" 2>/dev/null && before "$deadline"; do sleep 0.05; done
}

# Until node N's RPC answers (its CLI connects through it) and it sees all nodes up.
wait_node() {
    local n=$1 deadline
    deadline=$(deadline_after "$BOOT_SECONDS")
    until "$GARAGE" -c "$(cfg "$n")" status >/dev/null 2>&1; do
        before "$deadline" || die "node $n did not answer within ${BOOT_SECONDS}s (log: $DIR/node$n/log)"
        sleep 0.2
    done
}

wait_healthy() {
    local deadline
    deadline=$(deadline_after "$BOOT_SECONDS")
    until g json-api GetClusterHealth 2>/dev/null | jq -e '.status == "healthy"' >/dev/null; do
        before "$deadline" || die "cluster not healthy within ${BOOT_SECONDS}s: $(g json-api GetClusterHealth 2>&1 | tr '\n' ' ')"
        sleep 0.2
    done
}

node_id() { "$GARAGE" -c "$(cfg "$1")" node id -q 2>/dev/null; }

# A bucket, allowed to the key, with website access on.
create_bucket() {
    local name=$1
    g bucket create "$name" >/dev/null
    g bucket allow --read --write --owner "$name" --key "$(cat "$DIR/key_id")" >/dev/null
    g bucket website --allow "$name" >/dev/null
}

print_env() {
    local bucket=${1:-$(cat "$DIR/bucket")} s3s=() webs=() n
    for n in $(seq 1 $NODES); do
        s3s+=("http://127.0.0.1:$(s3_port "$n")")
        webs+=("http://127.0.0.1:$(web_port "$n")/")
    done
    echo "export AWS_ACCESS_KEY_ID=$(cat "$DIR/key_id")"
    echo "export AWS_SECRET_ACCESS_KEY=$(cat "$DIR/key_secret")"
    echo "export AWS_REGION=$REGION"
    echo "export AWS_ENDPOINT_URL=${s3s[0]}"
    echo "export GARAGE_BUCKET=$bucket"
    echo "export GARAGE_WEB_URL=${webs[0]}"
    echo "export GARAGE_WEB_ROOT_DOMAIN=$WEB_ROOT_DOMAIN"
    echo "export GARAGE_S3_URLS=$(IFS=,; echo "${s3s[*]}")"
    echo "export GARAGE_WEB_URLS=$(IFS=,; echo "${webs[*]}")"
}

cmd_start() {
    local owner=
    while [ $# -gt 0 ]; do
        case $1 in
        --owner) owner=$2; shift 2 ;;
        *) usage ;;
        esac
    done
    command -v "$GARAGE" >/dev/null || die "no $GARAGE on PATH (install: cargo install --locked garage --version 2.5.0)"
    command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
    [ ! -e "$DIR/ports" ] || die "$DIR already holds a cluster (stop it, or use another directory)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    free_ports $((4 * NODES)) >"$DIR/ports"
    local secret token n
    secret=$(openssl rand -hex 32)
    token=$(openssl rand -hex 32)
    for n in $(seq 1 $NODES); do write_config "$n" "$secret" "$token"; done
    if [ -n "$owner" ]; then
        # Once the owner is gone, however it ended, nobody uses the cluster: stop it, remove DIR.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; bash "$2" "$3" stop; rm -rf "$3"' \
            _ "$owner" "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$DIR" \
            >/dev/null 2>&1 </dev/null &
        echo $! >"$DIR/watchdog.pid"
    fi
    for n in $(seq 1 $NODES); do start_node "$n"; done
    for n in $(seq 1 $NODES); do wait_node "$n"; done
    for n in $(seq 2 $NODES); do g node connect "$(node_id "$n")" >/dev/null; done
    for n in $(seq 1 $NODES); do
        g layout assign -z dc1 -c 1G "$(node_id "$n" | cut -d@ -f1)" >/dev/null
    done
    g layout apply --version 1 >/dev/null
    wait_healthy
    g json-api CreateKey '{"name":"qasid-test"}' >"$DIR/key.json"
    jq -r .accessKeyId "$DIR/key.json" >"$DIR/key_id"
    jq -r .secretAccessKey "$DIR/key.json" >"$DIR/key_secret"
    rm "$DIR/key.json"
    echo qasid >"$DIR/bucket"
    create_bucket qasid
    print_env
}

cmd_stop() {
    local n pid
    [ -d "$DIR" ] || return 0
    for n in $(seq 1 $NODES); do stop_node "$n"; done
    if [ -f "$DIR/watchdog.pid" ]; then
        pid=$(cat "$DIR/watchdog.pid")
        rm -f "$DIR/watchdog.pid"
        # Not the watchdog itself when it is the one stopping the cluster.
        [ "$pid" = "$PPID" ] || [ "$pid" = "$$" ] || kill "$pid" 2>/dev/null || true
    fi
}

node_arg() {
    [[ ${1:-} =~ ^[1-3]$ ]] || usage
    [ -f "$DIR/ports" ] || die "no cluster in $DIR"
    DIR=$(cd "$DIR" && pwd)
}

case $CMD in
start) cmd_start "$@" ;;
stop) cmd_stop ;;
node-stop) node_arg "${1:-}"; stop_node "$1" ;;
node-start) node_arg "${1:-}"; start_node "$1"; wait_node "$1"; wait_healthy ;;
bucket)
    [ $# -eq 1 ] || usage
    DIR=$(cd "$DIR" && pwd)
    create_bucket "$1"
    print_env "$1"
    ;;
alias)
    [ $# -eq 2 ] || usage
    DIR=$(cd "$DIR" && pwd)
    g bucket alias "$1" "$2" >/dev/null
    ;;
cors)
    # The CORS rule of docs/OBJECT-STORAGE.md, through Garage's admin API (UpdateBucket), so
    # the browser reader can read the bucket's website. AllowedHeader "*": Garage compares
    # header names case-sensitively and browsers send them in lower case.
    [ $# -eq 1 ] || usage
    python3 - "$(sed -n 's/^admin_token = "\(.*\)"$/\1/p' "$(cfg 1)")" "$(admin_port 1)" "$1" <<'EOF'
import json, sys, urllib.request
token, port, name = sys.argv[1:4]
def call(path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.load(answer)
rule = {
    "AllowedOrigin": ["*"],
    "AllowedMethod": ["GET", "HEAD"],
    "AllowedHeader": ["*"],
    "ExposeHeader": ["ETag", "Content-Range", "Content-Length"],
    "MaxAgeSeconds": 86400,
}
bucket = call(f"GetBucketInfo?globalAlias={name}")
call(f"UpdateBucket?id={bucket['id']}", {"corsRules": [rule]})
EOF
    ;;
env) [ -f "$DIR/ports" ] || die "no cluster in $DIR"; print_env "${1:-}" ;;
*) usage ;;
esac
