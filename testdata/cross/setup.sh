#!/usr/bin/env bash
# Lets the tests build for linux/arm64 on an amd64 machine, as a Docker user would: registers
# Debian's qemu-user-static for aarch64 with binfmt_misc (with its fix-binary flag, so programs
# start inside sandboxes too) and puts Debian's arm64 busybox-static in DEST. Run as root after
# `apt-get install qemu-user-static busybox-static`; .ci/run does.
#
#   testdata/cross/setup.sh [DEST]     (default /var/cache/builder-tests)
set -euo pipefail
DEST=${1:-/var/cache/builder-tests}

mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

if [ ! -x "$DEST/busybox-arm64" ]; then
  mkdir -p "$DEST"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # The arm64 build of the busybox-static this machine's apt knows (same version, other arch).
  amd64=$(apt-cache show busybox-static | awk '/^Filename:/ {print $2; exit}')
  if ! curl -fsSL -o "$tmp/busybox.deb" "http://deb.debian.org/debian/${amd64/_amd64.deb/_arm64.deb}"; then
    dpkg --add-architecture arm64
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq busybox-static:arm64 && mv busybox-static_*_arm64.deb busybox.deb)
  fi
  dpkg-deb -x "$tmp/busybox.deb" "$tmp/x"
  install -m 755 "$tmp/x/bin/busybox" "$DEST/busybox-arm64"
fi
"$DEST/busybox-arm64" true
echo "arm64 programs run here (qemu-aarch64 via binfmt_misc); busybox for arm64 in $DEST"
