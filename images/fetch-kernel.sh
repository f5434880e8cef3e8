#!/bin/sh
# Fetches a Debian kernel package and unpacks it for `vnvdimm run --kernel K --modules DIR`,
# installing nothing on the host (apt-get download + dpkg-deb -x, as build-guest.sh does).
#
# Usage: images/fetch-kernel.sh [PKG] [CACHE_DIR]
#   PKG        a linux-image-*-unsigned package (default: the newest
#              linux-image-6.12.*+deb12-amd64-unsigned in the apt lists)
#   CACHE_DIR  default: images/cache next to this script
# Prints the directory CACHE_DIR/kernels/<release>, which holds
#   vmlinuz    the bzImage as shipped
#   vmlinux    the ELF inside it (QEMU boots it through PVH, faster under TCG)
#   config     the kernel's .config
#   lib/modules/<release>/   the package's modules, untouched
# so that `vnvdimm run --kernel DIR/vmlinux --modules DIR` boots it with the default
# image's userspace (docs/kernels.md). A second run only prints the directory.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${2:-$here/cache}
log() { echo "fetch-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb xz zstd gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install -y apt dpkg xz-utils zstd gzip)"
done

pick_kernel() {
    apt-cache pkgnames linux-image-6.12. | grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | sort -V | tail -n1
}
pkg=${1:-$(pick_kernel)}
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
    log "no linux-image-6.12.*+deb12-amd64-unsigned in the apt lists; running apt-get update"
    apt-get update >&2 || true
    pkg=$(pick_kernel)
fi
[ -n "$pkg" ] || die "no linux-image-6.12.*+deb12-amd64-unsigned package known to apt (run apt-get update, or name a package)"
case $pkg in
    linux-image-*-unsigned) ;;
    *) die "$pkg: expected a linux-image-<release>-unsigned package (the signed ones only wrap it)" ;;
esac
release=${pkg#linux-image-}; release=${release%-unsigned}
out=$cache/kernels/$release
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi

started=$(date +%s)
log "fetching $pkg into $out"
mkdir -p "$cache/kernels"
work=$(mktemp -d "$cache/kernels/.fetch.XXXXXX")
chmod 0777 "$work"  # apt-get download drops privileges to _apt when run as root
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$pkg" >&2 2>"$work/apt.err") || die "apt-get download $pkg failed: $(cat "$work/apt.err")"
mkdir -p "$work/root"
dpkg-deb -x "$work"/*.deb "$work/root"
boot=$work/root/boot
[ -f "$boot/vmlinuz-$release" ] || die "$pkg has no /boot/vmlinuz-$release"
modules=$work/root/lib/modules/$release
[ -d "$modules" ] || modules=$work/root/usr/lib/modules/$release
[ -d "$modules" ] || die "$pkg has no lib/modules/$release"

# The ELF vmlinux is the bzImage's compressed payload: find the first stream whose
# magic decompresses to an ELF (6.1 uses XZ, 6.12 zstd; a magic may also occur by chance).
extract() {
    magic=$1; shift
    for off in $(LC_ALL=C grep -obUaP "$magic" "$boot/vmlinuz-$release" | cut -d: -f1); do
        tail -c +$((off + 1)) "$boot/vmlinuz-$release" | "$@" >"$work/vmlinux" 2>/dev/null || true
        head -c 4 "$work/vmlinux" | grep -q 'ELF' && return 0
    done
    return 1
}
extract '\xfd7zXZ\x00' xz -dc || extract '\x28\xb5\x2f\xfd' zstd -dc || extract '\x1f\x8b\x08' gzip -dc \
    || die "cannot find the ELF vmlinux in $pkg's bzImage (payload neither XZ, zstd nor gzip)"

stage=$work/out
mkdir -p "$stage/lib/modules"
mv "$modules" "$stage/lib/modules/$release"
mv "$boot/vmlinuz-$release" "$stage/vmlinuz"
mv "$work/vmlinux" "$stage/vmlinux"
[ -f "$boot/config-$release" ] && mv "$boot/config-$release" "$stage/config"
echo "$pkg" >"$stage/package"
touch "$stage/done"
# Tests may fetch the same kernel side by side: the first complete copy wins (a
# directory rename is atomic), the others are dropped with their work directory.
[ -d "$out" ] && [ ! -f "$out/done" ] && rm -rf "$out"
mv -T "$stage" "$out" 2>/dev/null || [ -f "$out/done" ] || die "cannot move the unpacked kernel to $out"
log "done in $(($(date +%s) - started)) s: $(du -sh "$out" | cut -f1)"
echo "$out"
