#!/bin/sh
# Runs deploy/install.sh for real in a Debian 12 container booted with systemd as PID 1
# (debootstrap + systemd-nspawn), then checks what no other test can here: the unit
# starts under its full hardening (the gateway with the API, one process), the API answers /healthz, `ombre stop` drains, and a
# second install upgrades while keeping /etc/ombre and /var/lib/ombre.
#   sudo sh deploy/test-systemd.sh [ROOTFS]    # ROOTFS is kept between runs
# Needs root, debootstrap and systemd-container, and Debian's and PyPI's registries. The
# container shares the host's network: its config points at a port where nothing
# listens, so it touches no broker of the host, but its API takes the host's port 8080.
# Not part of `make test` (minutes, and a privileged container): run it after changing
# the units or install.sh.
set -eu

rootfs=${1:-/var/tmp/ombre-systemd-rootfs}
repo=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
fail() { echo "test-systemd: FAILED: $*" >&2; exit 1; }

if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-venv,passwd \
        bookworm "$rootfs" http://deb.debian.org/debian
fi
# A fresh install each run, on the kept base system.
rm -rf "$rootfs/opt/ombre" "$rootfs/etc/ombre" "$rootfs/var/lib/ombre" "$rootfs/root/ombre-src" \
    "$rootfs"/usr/local/lib/systemd/system/ombre*.service \
    "$rootfs"/etc/systemd/system/ombre*.service "$rootfs"/etc/systemd/system/*/ombre*.service
if grep -q '^ombre:' "$rootfs/etc/passwd"; then
    chroot "$rootfs" userdel ombre
fi
mkdir -p "$rootfs/root/ombre-src" "$rootfs/etc/ombre"
(cd "$repo" && tar -cf - pyproject.toml requirements.lock README.md gateway connectors shadow api \
    sim ombre deploy/systemd \
    deploy/install.sh) \
    | tar -xf - -C "$rootfs/root/ombre-src"
for f in /etc/resolv.conf /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
    if [ -f "$f" ]; then cp "$f" "$rootfs$f"; fi
done
sed 's/^    port: 1883$/    port: 9/' "$repo/deploy/systemd/plant.yaml" > "$rootfs/etc/ombre/plant.yaml"
grep -q '^    port: 9$' "$rootfs/etc/ombre/plant.yaml" || fail "could not move the broker port"

log=$(mktemp)
systemd-nspawn --quiet --register=no --keep-unit -D "$rootfs" -b --console=read-only \
    >"$log" 2>&1 &
nspawn=$!
trap 'kill "$nspawn" 2>/dev/null || true; wait "$nspawn" 2>/dev/null || true; rm -f "$log"' EXIT
leader=""
for _ in $(seq 60); do
    leader=$(pgrep -P "$nspawn" || true)
    if [ -n "$leader" ] && nsenter -t "$leader" -a systemctl is-system-running --wait \
        >/dev/null 2>&1; then
        break
    fi
    sleep 1
done
[ -n "$leader" ] || fail "the container did not boot: $(tail -5 "$log")"
inside() { nsenter -t "$leader" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
healthz='import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/healthz").read().decode())'
wait_active() {
    for _ in $(seq 30); do
        if inside systemctl is-active --quiet ombre \
            && inside python3 -c "$healthz" 2>/dev/null | grep -q '"ok"'; then
            return 0
        fi
        sleep 1
    done
    inside journalctl --no-pager -u ombre | tail -30
    fail "ombre is not active with /healthz answering"
}

inside sh /root/ombre-src/deploy/install.sh --source /root/ombre-src | grep -v '^WARNING'
inside grep -q 'port: 9$' /etc/ombre/plant.yaml || fail "install.sh replaced an existing config"
wait_active
echo "test-systemd: installed, the unit active, /healthz answers"
[ "$(inside stat -c '%a %U' /var/lib/ombre/first-admin-token)" = "600 ombre" ] \
    || fail "the first admin token is not a file of ombre's with mode 0600"
if inside journalctl --no-pager -u ombre | grep -q 'ombre_[0-9]'; then
    fail "the journal shows a token"
fi
inside systemd-analyze security --no-pager ombre | grep 'Overall exposure'

inside sh -c 'echo kept > /var/lib/ombre/marker'
inside systemctl stop ombre
inside journalctl --no-pager -u ombre | grep -q 'ombre.app: stopped' \
    || fail "the gateway did not log its orderly stop"
inside sh /root/ombre-src/deploy/install.sh --source /root/ombre-src | grep -v '^WARNING'
wait_active
[ "$(inside cat /var/lib/ombre/marker)" = kept ] || fail "the upgrade lost /var/lib/ombre"
inside grep -q 'port: 9$' /etc/ombre/plant.yaml || fail "the upgrade replaced the config"
echo "test-systemd: upgraded, data and config kept, the unit active"
inside systemctl poweroff
wait "$nspawn" || true
echo "test-systemd: OK"
