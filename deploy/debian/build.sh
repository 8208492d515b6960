#!/bin/sh
# Builds the Debian package of Ombre from this repository (`make deb`):
#   deploy/debian/build.sh [--arch amd64|arm64] [--version VERSION] [--out DIR] [--pip PIP]
#
# The package carries every wheel Ombre needs for the target architecture and Python
# 3.11 (Debian 12, Raspberry Pi OS 12), at the versions of requirements.lock: its
# postinst builds /opt/ombre/venv from them with no network. Layout:
#   /opt/ombre/wheels/             the wheels (the venv is built by postinst, not shipped)
#   /etc/ombre/plant.yaml          the starter config, a conffile: kept on upgrade
#   /lib/systemd/system/ombre.service
#   /var/lib/ombre                 the data, created by postinst, removed only by purge
# --arch defaults to this machine's; wheels of another architecture are downloaded for
# it, never built (a dependency without a wheel for it stops the build, named by pip).
# --version defaults to the project's version and the commit's date and hash, so a build
# of a newer commit upgrades an older one. --pip is the pip that downloads and builds
# the wheels (default: .venv/bin/pip, then pip3).
set -eu

# The pip that postinst runs from its wheel to fill the venv, so the target needs no
# python3-venv (Debian's venv has no pip of its own without it).
PIP_VERSION=26.3

repo=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
usage() { echo "usage: $0 [--arch amd64|arm64] [--version V] [--out DIR] [--pip PIP]" >&2; exit 2; }
fail() { echo "make deb: $*" >&2; exit 1; }

arch=$(dpkg --print-architecture)
version=
out=$repo/dist
pip=$repo/.venv/bin/pip
[ -x "$pip" ] || pip=pip3
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case $1 in
        --arch) arch=$2 ;;
        --version) version=$2 ;;
        --out) out=$2 ;;
        --pip) pip=$2 ;;
        *) usage ;;
    esac
    shift 2
done
case $arch in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) fail "--arch $arch: amd64 or arm64 (32-bit Raspberry Pi OS is not supported: see README)" ;;
esac

project_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml")
if [ -z "$version" ]; then
    if git -C "$repo" rev-parse --verify -q HEAD >/dev/null; then
        # Debian orders 0.1.0+git20261204101500.ab12cd34 after every earlier commit's.
        stamp=$(git -C "$repo" log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)
        version=$project_version+git$stamp.$(git -C "$repo" rev-parse --short=8 HEAD)
    else
        version=$project_version
    fi
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
wheels=$stage/opt/ombre/wheels
mkdir -p "$stage/DEBIAN" "$wheels" "$stage/etc/ombre" "$stage/lib/systemd/system" \
    "$stage/usr/share/doc/ombre"

# Ombre's own wheel, then its dependencies with every extra, as wheels for the target.
# setuptools builds in $repo/build, and a module left there from an earlier build would
# go into the wheel: the folder is emptied before and after.
rm -rf "$repo/build"
"$pip" wheel --quiet --disable-pip-version-check --no-deps -w "$stage/self" "$repo"
rm -rf "$repo/build"
set -- "$stage"/self/ombre-*.whl
[ $# = 1 ] || fail "expected one wheel of Ombre, found: $*"
cp "$1" "$wheels/"
platforms="--platform linux_$machine --platform manylinux2014_$machine"
for glibc in $(seq 17 36); do  # Debian 12 has glibc 2.36
    platforms="$platforms --platform manylinux_2_${glibc}_$machine"
done
# shellcheck disable=SC2086 # $platforms is a list of options
"$pip" download --quiet --disable-pip-version-check --dest "$wheels" \
    --only-binary=:all: $platforms --python-version 3.11 --implementation cp \
    -c "$repo/requirements.lock" "$1[all]" "pip==$PIP_VERSION"
for wheel in "$wheels"/*.whl; do
    case $wheel in
        *-none-any.whl | *_"$machine".whl) ;;
        *) fail "$(basename "$wheel") is not a wheel for $machine" ;;
    esac
done

install -m 0640 "$repo/deploy/systemd/plant.yaml" "$stage/etc/ombre/plant.yaml"
install -m 0644 "$repo/deploy/systemd/ombre.service" "$stage/lib/systemd/system/ombre.service"
for script in postinst prerm postrm; do
    install -m 0755 "$repo/deploy/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/ombre/plant.yaml > "$stage/DEBIAN/conffiles"
printf 'Ombre\nLicense: Apache-2.0 (/usr/share/common-licenses/Apache-2.0)\n' \
    > "$stage/usr/share/doc/ombre/copyright"
rm -rf "$stage/self"

cat > "$stage/DEBIAN/control" <<EOF
Package: ombre
Version: $version
Architecture: $arch
Maintainer: Ombre developers <ombre@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: python3 (>= 3.11), python3 (<< 3.12), passwd, init-system-helpers (>= 1.54)
Section: net
Priority: optional
Description: edge gateway and digital shadow for the shop floor
 Ombre reads machines over MQTT, OPC UA, Modbus TCP, Siemens S7 and Sparkplug B,
 stores every reading through a durable outbox, keeps a live model of each machine
 with ISO 22400 KPIs, and serves an API and a dashboard. One service, ombre.service,
 runs the gateway with the API. The package carries the wheels of its Python
 dependencies and installs them into /opt/ombre/venv without network.
EOF

mkdir -p "$out"
deb=$out/ombre_${version}_$arch.deb
# The wheels are compressed already: gzip costs seconds where xz costs a minute.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
