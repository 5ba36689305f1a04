#!/bin/sh
# Verify a qasid bundle with standard tools only (openssl, unzip, jq, base64, coreutils):
# no qasid code. This is the procedure docs/FORMAT.md describes, as a runnable script;
# the test suite runs it against the checked-in test vector and against tampered copies.
#
#   contrib/verify-bundle.sh BUNDLE.zip PUBLISHER.pub
#
# Exits 0 and prints "OK" only if the manifest signature verifies with the publisher's key
# and every file in the bundle matches its size and sha256 in the manifest. It does not
# re-implement the strict zip-layout checks (hidden data, entry attributes) that
# `qasid verify` makes; for those, use qasid or inspect `zipinfo -v` by hand.
set -eu
bundle=$1
pubfile=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The public key: the second line of publisher.pub is base64("Ed" ‖ key id(8) ‖ key(32)).
#    Wrap the raw 32-byte key in the fixed DER prefix of an Ed25519 SubjectPublicKeyInfo.
sed -n 2p "$pubfile" | base64 -d | tail -c 32 > "$work/key.raw"
printf '\060\052\060\005\006\003\053\145\160\003\041\000' > "$work/key.der"
cat "$work/key.raw" >> "$work/key.der"
openssl pkey -pubin -inform DER -in "$work/key.der" -out "$work/key.pem"

# 2. The signed message is the domain prefix followed by the exact manifest.json bytes.
unzip -p "$bundle" manifest.json > "$work/manifest.json"
unzip -p "$bundle" manifest.sig > "$work/manifest.sig"
printf 'qasid-bundle-manifest-v1\n' > "$work/message"
cat "$work/manifest.json" >> "$work/message"
openssl pkeyutl -verify -pubin -inkey "$work/key.pem" -rawin \
    -in "$work/message" -sigfile "$work/manifest.sig" >/dev/null

# 3. The manifest must name this publisher (its "publisher" field is the same base64 line).
[ "$(jq -r .publisher "$work/manifest.json")" = "$(sed -n 2p "$pubfile")" ] || {
    echo "manifest is for another publisher" >&2; exit 1; }

# 4. Every file: size and sha256 as the manifest says, and no entry the manifest omits.
jq -r '.files[] | "\(.sha256) \(.size) \(.path)"' "$work/manifest.json" > "$work/expected"
while read -r sha size path; do
    unzip -p "$bundle" "files/$path" > "$work/file"
    [ "$(wc -c < "$work/file")" -eq "$size" ] || { echo "$path: size mismatch" >&2; exit 1; }
    actual=$(openssl dgst -sha256 -r "$work/file" | cut -d' ' -f1)
    [ "$actual" = "$sha" ] || { echo "$path: sha256 mismatch" >&2; exit 1; }
done < "$work/expected"
unzip -Z1 "$bundle" | grep -v '^manifest\.\(json\|sig\)$' | sed 's|^files/||' | sort > "$work/entries"
cut -d' ' -f3- "$work/expected" | sort > "$work/listed"
cmp -s "$work/entries" "$work/listed" || { echo "bundle entries differ from the manifest" >&2; exit 1; }
echo OK
