#!/usr/bin/env bash
# The test suite on a fresh Debian machine that has only Rust: installs the Debian packages the
# tests need (scripts/apt-packages.txt) when run as root, otherwise prints the one `apt-get
# install` line to run and stops with exit code 2; then Garage (scripts/install-garage.sh,
# cargo install, skipped when present); then runs `cargo test --locked` with any
# arguments given (e.g. `scripts/test.sh --test it repo_publish`).
#
#   scripts/test.sh                  packages, then the whole suite
#   scripts/test.sh --packages-only  packages only (what .ci/run does before fmt and clippy)
set -euo pipefail
cd "$(dirname "$0")/.."

packages_only=false
if [ "${1:-}" = "--packages-only" ]; then
    packages_only=true
    shift
fi

# The list without comments and blank lines.
mapfile -t APT_PACKAGES < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' scripts/apt-packages.txt | grep -v '^$')

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' &&
        ! type -P "$pkg" >/dev/null; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "test packages: all present (${#APT_PACKAGES[@]} from scripts/apt-packages.txt)"
elif [ "$(id -u)" -ne 0 ]; then
    echo "The tests need these Debian packages; install them as root, then run $0 again:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 2
else
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for pkg in "${missing[@]}"; do
        dpkg-query -W -f='${Package} ${Version}\n' "$pkg"
    done
fi

if [ "$packages_only" = true ]; then
    exit 0
fi
# Garage for the object-storage tests (tests/it/buckets.rs), pinned; skipped when present.
bash scripts/install-garage.sh
# The reader page tests' JavaScript dependency, pinned by web/test/package-lock.json.
if [ -f web/test/package-lock.json ] && [ ! -d web/test/node_modules ]; then
    (cd web/test && npm ci --no-audit --no-fund)
fi
exec cargo test --locked "$@"
