# shellcheck shell=bash
# What the benchmark scripts share (sourced by them from the repository root, never run): the
# qasid binary, tools installed when missing, the ~16 KiB bundles several of them publish, and
# timing helpers.

# bench_qasid: sets QASID to the absolute path of $QASID_BIN when given, else of a release build
# made now (a debug build only makes qasid slower).
bench_qasid() {
    if [ -n "${QASID_BIN:-}" ]; then
        QASID="$(realpath "$QASID_BIN")"
    else
        cargo build --release --quiet --locked --bin qasid
        QASID="$PWD/target/release/qasid"
    fi
}

# bench_need COMMAND:PACKAGE ...: installs with apt the package of each command not on PATH.
bench_need() {
    local need=() tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
    done
    [ "${#need[@]}" -gt 0 ] || return 0
    echo "installing: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
}

# bench_article DIR PHOTO_BYTES: an article folder with one incompressible image of that size,
# so its bundle has about the size asked for.
bench_article() {
    mkdir -p "$1/images"
    cat >"$1/article.md" <<'MD'
---
title: Benchmark article
author: Bench
date: 2026-01-01
language: en
---

# Benchmark article

![photo](images/photo.jpg)
MD
    head -c "$2" /dev/urandom >"$1/images/photo.jpg"
}

# make_bundles FIRST LAST: one signed ~16 KiB bundle per number, $WORK/zips/s<n>.zip, signed
# with $WORK/keys/publisher.key, $JOBS at a time.
make_bundles() {
    mkdir -p "$WORK/zips"
    # shellcheck disable=SC2016 # the single-quoted script is expanded by the inner sh
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

# publish_range REPO FIRST LAST: publishes those bundles of make_bundles into REPO, readable by
# every user (an rsync daemon or nginx may serve it).
publish_range() {
    seq "$2" "$3" | sed "s|.*|$WORK/zips/s&.zip|" |
        xargs "$QASID" publish --repo "$1" --key "$WORK/keys/publisher.key" >/dev/null
    chmod -R a+rX "$1"
}

now_ms() { date +%s%3N; }

# median [N ...]: the median of the arguments, or of the lines on stdin when there are none.
median() {
    if [ $# -gt 0 ]; then printf '%s\n' "$@"; else cat; fi |
        sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
