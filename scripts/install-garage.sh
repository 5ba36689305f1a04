#!/usr/bin/env bash
# Garage, the S3-compatible object store the object-storage tests and benches run as a real
# three-node cluster (scripts/garage-cluster.sh, docs/OBJECT-STORAGE.md). Pinned: installed with
# `cargo install --locked garage --version 2.5.0` (about 10 minutes of compiling on 2 cores, into
# ~/.cargo/bin), skipped when `garage --version` already reports that version.
set -euo pipefail

GARAGE_VERSION=2.5.0

if [ -x "${HOME:-/root}/.cargo/bin/garage" ] && ! command -v garage >/dev/null 2>&1; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
if command -v garage >/dev/null 2>&1 &&
    garage --version 2>/dev/null | grep -Eq "(^|[^0-9.])v?${GARAGE_VERSION//./\\.}([^0-9.]|$)"; then
    echo "garage: $(garage --version | head -n1) present"
    exit 0
fi
echo "garage: installing ${GARAGE_VERSION} (cargo install --locked)"
cargo install --locked garage --version "$GARAGE_VERSION"
garage --version | head -n1
