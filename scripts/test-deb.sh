#!/usr/bin/env bash
# Installs a qasid .deb with dpkg, checks what it installed and runs the installed binary, then
# purges it again. Needs root (CI runs as root); without root it says so and exits 0 (skipped).
#
#   scripts/test-deb.sh target/deb/qasid_0.1.0_amd64.deb
set -euo pipefail
deb="$1"
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIPPED: installing a package needs root"
    exit 0
fi
if dpkg-query -W -f='${Status}' qasid 2>/dev/null | grep -q 'install ok installed'; then
    echo "$0: a qasid package is already installed; not touching it" >&2
    exit 1
fi
fail() { echo "FAIL: $*" >&2; dpkg --purge qasid >/dev/null 2>&1 || true; exit 1; }

dpkg --install "$deb"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -x /usr/bin/qasid ] || fail "/usr/bin/qasid missing"
/usr/bin/qasid --version | grep -q 'qasid' || fail "qasid --version"
for page in qasid qasid-mirror qasid-publish qasid-keygen; do
    [ -f "/usr/share/man/man1/$page.1.gz" ] || fail "man page $page.1.gz missing"
done
zcat /usr/share/man/man1/qasid.1.gz | grep -q '^\.TH' || fail "qasid.1 is not a man page"
grep -q 'qasid' /usr/share/bash-completion/completions/qasid || fail "bash completion"
[ -f /usr/share/zsh/vendor-completions/_qasid ] || fail "zsh completion"
[ -f /usr/share/fish/vendor_completions.d/qasid.fish ] || fail "fish completion"
unit=/lib/systemd/system/qasid-mirror.service
grep -q '^ExecStart=/usr/bin/qasid mirror' "$unit" || fail "unit ExecStart"
grep -q '^User=qasid$' "$unit" || fail "unit User"
id qasid >/dev/null || fail "system user qasid missing"
[ "$(stat -c '%U:%G %a' /var/lib/qasid)" = "qasid:qasid 750" ] || fail "/var/lib/qasid: $(stat -c '%U:%G %a' /var/lib/qasid)"
dpkg-query -W -f='${Conffiles}\n' qasid | grep -q '/etc/qasid/mirrors.toml' || fail "conffile"

# The installed binary works as the service user would run it: a key pair, a signed bundle, a
# verification, and the packaged config accepted by the mirror's config check if it has one.
/usr/bin/qasid keygen --unencrypted --out "$work/keys" >/dev/null || fail "keygen"
mkdir "$work/story"
printf -- '---\ntitle: Installed\nauthor: Desk\ndate: 2026-01-01\nlanguage: en\n---\n\nFrom the package.\n' >"$work/story/article.md"
/usr/bin/qasid bundle "$work/story" --key "$work/keys/publisher.key" --out "$work/story.zip" >/dev/null || fail "bundle"
/usr/bin/qasid verify "$work/story.zip" --publisher "$work/keys/publisher.pub" >/dev/null || fail "verify"

dpkg --remove qasid >/dev/null
[ ! -e /usr/bin/qasid ] || fail "binary left after remove"
[ -f /etc/qasid/mirrors.toml ] || fail "conffile must stay after remove (until purge)"
dpkg --purge qasid >/dev/null
[ ! -e /etc/qasid/mirrors.toml ] || fail "conffile left after purge"
[ ! -e /var/lib/qasid ] || fail "/var/lib/qasid left after purge"
echo "ok: $deb installs, runs and purges cleanly"
