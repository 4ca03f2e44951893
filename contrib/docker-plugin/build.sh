#!/bin/sh
# Builds the folder of ringtail's managed Docker plugin: config.json and a
# rootfs holding nothing but a static ringtail binary (and the empty
# directories its mounts need), ready for
#
#   docker plugin create ringtail DIR && docker plugin enable ringtail
#
# Usage: contrib/docker-plugin/build.sh [DIR]      (default: target/docker-plugin)
#   RINGTAIL_BIN=PATH   use this binary instead of building one; it must be
#                       statically linked (the plugin's rootfs has no libc).
#
# The binary comes from scripts/build-static (glibc linked statically; no
# musl toolchain is needed).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/docker-plugin}

if [ -z "${RINGTAIL_BIN:-}" ]; then
    bin=$("$root/scripts/build-static")
else
    bin=$RINGTAIL_BIN
fi

# A dynamically linked binary would not start in the empty rootfs.
if command -v readelf >/dev/null 2>&1; then
    if readelf -d "$bin" | grep -q '(NEEDED)'; then
        echo "build.sh: $bin needs shared libraries; build it with scripts/build-static" >&2
        exit 1
    fi
fi

rm -rf "$out"
mkdir -p "$out/rootfs/bin" "$out/rootfs/etc" "$out/rootfs/tmp" \
    "$out/rootfs/run/ringtail" "$out/rootfs/run/docker/plugins" "$out/rootfs/run/docker/logging" \
    "$out/rootfs/proc" "$out/rootfs/dev" "$out/rootfs/sys"
# Mount points for the host's /etc/hosts and /etc/resolv.conf, which
# dockerd binds into a plugin with a network setting.
: > "$out/rootfs/etc/hosts"
: > "$out/rootfs/etc/resolv.conf"
cp "$bin" "$out/rootfs/bin/ringtail"
if command -v strip >/dev/null 2>&1; then
    strip "$out/rootfs/bin/ringtail"
fi
cp "$here/config.json" "$out/config.json"

echo "plugin folder: $out ($(du -sh "$out" | cut -f1))"
echo "next: mkdir -p /run/ringtail && docker plugin create ringtail $out && docker plugin enable ringtail"
