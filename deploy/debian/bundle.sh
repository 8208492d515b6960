#!/bin/sh
# Builds the offline bundle of Ombre (`make bundle`): one archive to carry to a plant with
# no internet, dist/ombre-<version>-<arch>.tar, holding
#   ombre_<version>_<arch>.deb   the package, with every wheel for <arch> (build.sh)
#   install.sh                   checks the archive and the machine, then dpkg -i
#   SHA256SUMS
# On the target: tar -xf ombre-*.tar && sudo sh ombre-*/install.sh
# The package depends only on what Debian 12 and Raspberry Pi OS 12 install by default
# (python3, passwd, init-system-helpers), so nothing else is fetched.
#   deploy/debian/bundle.sh [build.sh's options]
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
out=$here/../../dist
prev=
for arg in "$@"; do  # build.sh's --out is the bundle's too
    if [ "$prev" = --out ]; then out=$arg; fi
    prev=$arg
done
deb=$(sh "$here/build.sh" "$@")
name=$(basename "$deb" .deb)  # ombre_<version>_<arch>
version=${name#ombre_}
arch=${version##*_}
version=${version%_*}
dir=ombre-$version-$arch

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$dir"
cp "$deb" "$stage/$dir/"
install -m 0755 "$here/bundle-install.sh" "$stage/$dir/install.sh"
(cd "$stage/$dir" && sha256sum "$(basename "$deb")" install.sh > SHA256SUMS)
tar -cf "$out/$dir.tar" -C "$stage" "$dir"
echo "$out/$dir.tar"
