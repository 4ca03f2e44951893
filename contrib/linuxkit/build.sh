#!/bin/sh
# Builds contrib/linuxkit/rootfs/ (the LinuxKit package's files) around a
# static ringtail, then the package itself when `linuxkit` is installed.
#
# Usage: contrib/linuxkit/build.sh [--rootfs-only]
#   RINGTAIL_BIN=PATH   use this binary instead of building one; it must be
#                       statically linked (LinuxKit's root has no glibc).
#   ROOTFS=DIR          assemble the files there instead (the Dockerfile
#                       copies contrib/linuxkit/rootfs/).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -z "${RINGTAIL_BIN:-}" ]; then
    bin=$("$root/scripts/build-static")
else
    bin=$RINGTAIL_BIN
fi
if readelf -d "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    echo "build.sh: $bin needs shared libraries; build it with scripts/build-static" >&2
    exit 1
fi

rootfs=${ROOTFS:-$here/rootfs}
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/bin" "$rootfs/etc/init.d"
cp "$bin" "$rootfs/usr/bin/ringtail"
# memlogd's, logread's and logwrite's names: ringtail reads its argv[0].
for name in memlogd logread logwrite; do
    ln -s ringtail "$rootfs/usr/bin/$name"
done
cp "$here/etc/init.d/ringtail" "$rootfs/etc/init.d/ringtail"
chmod 0755 "$rootfs/etc/init.d/ringtail"
echo "rootfs: $rootfs"

if [ "${1:-}" = "--rootfs-only" ]; then
    exit 0
fi
if command -v linuxkit >/dev/null 2>&1; then
    linuxkit pkg build "$here"
else
    echo "linuxkit is not installed: build the image with" >&2
    echo "  docker build -t ringtail $here" >&2
fi
