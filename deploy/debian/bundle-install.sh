#!/bin/sh
# Installs or upgrades Ombre from this offline bundle, with no network:
#   sudo sh install.sh
# Checks the files against SHA256SUMS and the package's architecture against this
# machine's, then installs the package: the service starts, /etc/ombre/plant.yaml is
# kept if you changed it, and the first admin token is in /var/lib/ombre/first-admin-token.
set -eu

cd "$(dirname -- "$0")"
fail() { echo "ombre install: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run it as root (sudo sh $0)"
sha256sum --check --quiet SHA256SUMS || fail "the bundle is damaged: SHA256SUMS does not match"
set -- ombre_*.deb
if [ $# != 1 ] || [ ! -f "$1" ]; then fail "no single ombre_*.deb beside install.sh"; fi
wanted=$(dpkg-deb --field "$1" Architecture)
machine=$(dpkg --print-architecture)
[ "$wanted" = "$machine" ] || fail "this bundle is for $wanted; this machine is $machine"
dpkg -i "$1"
echo "ombre install: $(dpkg-query -W -f '${Package} ${Version}' ombre) installed"
