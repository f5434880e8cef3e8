#!/bin/sh
# Builds the TCG test guest from Debian packages only: Debian's unmodified 6.1 kernel
# (bzImage + the ELF vmlinux inside it, for PVH boot) and a small initramfs with
# busybox, kmod, ndctl, daxctl and the NVDIMM modules.
#
# Usage: images/build-guest.sh [CACHE_DIR]     (default: images/cache next to this script)
# Prints the directory holding vmlinux, bzImage, initramfs.cpio.gz and kernel-release.
# The result is cached under CACHE_DIR/<key>, key = package versions + this script's hash,
# so a second run only computes the key. CACHE_DIR/current is a symlink to the last build.
#
# Needs: apt-get/apt-cache (Debian 12), and installed busybox-static, kmod, ndctl, daxctl,
# cpio, xz-utils (the script apt-get installs them when run as root and they are missing).
# Override the kernel package with VNV_KERNEL_PKG=linux-image-6.1.0-NN-amd64-unsigned.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/cache}
log() { echo "build-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- host tools ------------------------------------------------------------
need_pkgs=""
installed() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
for pkg in busybox-static kmod ndctl daxctl cpio xz-utils; do
    case $(installed "$pkg") in none|"") need_pkgs="$need_pkgs $pkg" ;; esac
done
if [ -n "$need_pkgs" ]; then
    [ "$(id -u)" = 0 ] || die "missing packages:$need_pkgs (install them: apt-get install -y$need_pkgs)"
    log "installing$need_pkgs"
    apt-get install -y $need_pkgs >&2 || { apt-get update >&2 && apt-get install -y $need_pkgs >&2; } \
        || die "apt-get install$need_pkgs failed"
fi

# --- fast path -------------------------------------------------------------
# Asking apt costs seconds; skip it while neither the apt lists, the host packages nor
# this recipe changed since the last build.
script_hash=$(cat "$0" "$here/init" | sha256sum | cut -c1-12)
host_key="busybox-static=$(installed busybox-static) kmod=$(installed kmod) \
ndctl=$(installed ndctl) daxctl=$(installed daxctl) libc6=$(installed libc6) script=$script_hash"
if [ -z "${VNV_KERNEL_PKG:-}" ] && [ -f "$cache/current/done" ] && [ -f "$cache/current/host-key" ] \
    && [ "$(cat "$cache/current/host-key")" = "$host_key" ] && [ "$cache/current/done" -nt /var/lib/apt/lists ]; then
    readlink -f "$cache/current"
    exit 0
fi

# --- which kernel ----------------------------------------------------------
pick_kernel() {
    apt-cache pkgnames linux-image-6.1.0- | grep -E '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' | sort -V | tail -n1
}
kpkg=${VNV_KERNEL_PKG:-$(pick_kernel)}
if [ -z "$kpkg" ] && [ "$(id -u)" = 0 ]; then
    log "no linux-image-6.1.0-*-amd64-unsigned in the apt lists; running apt-get update"
    apt-get update >&2 || true
    kpkg=$(pick_kernel)
fi
[ -n "$kpkg" ] || die "no linux-image-6.1.0-*-amd64-unsigned package known to apt (run apt-get update)"
kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
[ -n "$kver" ] && [ "$kver" != "(none)" ] || die "apt has no candidate version for $kpkg"
krel=${kpkg#linux-image-}; krel=${krel%-unsigned}

key_src="$kpkg=$kver $host_key"
key=$(echo "$key_src" | sha256sum | cut -c1-16)
out=$cache/$key
if [ -f "$out/done" ]; then
    echo "$host_key" >"$out/host-key"
    touch "$out/done"
    ln -sfn "$key" "$cache/current"
    echo "$out"
    exit 0
fi

log "building $out ($key_src)"
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build.XXXXXX")
chmod 0755 "$work"  # apt-get download drops privileges to _apt
trap 'rm -rf "$work"' EXIT

# --- kernel ----------------------------------------------------------------
(cd "$work" && apt-get download "$kpkg=$kver" >&2) || die "apt-get download $kpkg=$kver failed"
dpkg-deb -x "$work"/linux-image-*.deb "$work/kroot"
cp "$work/kroot/boot/vmlinuz-$krel" "$work/bzImage"

# The bzImage payload is XZ: find the stream magic (FD 37 7A 58 5A 00) and decompress
# from there; xz stops at the end of the stream and complains about trailing data.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ' "$work/bzImage" | head -n1 | cut -d: -f1)
[ -n "$off" ] || die "no XZ stream in $kpkg's bzImage"
tail -c +$((off + 1)) "$work/bzImage" | xz -dc >"$work/vmlinux" 2>/dev/null || true
head -c 4 "$work/vmlinux" | grep -q 'ELF' || die "decompressed payload of the bzImage is not an ELF vmlinux"

# --- initramfs -------------------------------------------------------------
root=$work/root
mkdir -p "$root"/bin "$root"/sbin "$root"/etc "$root"/proc "$root"/sys "$root"/dev "$root"/tmp \
    "$root"/run "$root"/mnt "$root"/lib/modules
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Binaries with their shared libraries and the dynamic loader, at the same paths as on the host.
copy_with_libs() {
    for bin in "$@"; do
        install -D -m 0755 "$bin" "$root$bin"
        ldd "$bin" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | while read -r lib; do
            [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
    done
}
kmod_bin=$(command -v kmod || echo /bin/kmod)
copy_with_libs "$(command -v ndctl)" "$(command -v daxctl)" "$kmod_bin"
for tool in modprobe depmod lsmod insmod rmmod modinfo; do
    rm -f "$root/bin/$tool" "$root/sbin/$tool"
    ln -s "$kmod_bin" "$root/sbin/$tool"
done
# ld.so looks in these by default; keep a cache-free config.
mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu" "$root/usr/lib/x86_64-linux-gnu"
[ -d /etc/ndctl ] && cp -r /etc/ndctl "$root/etc/" || true
[ -d /etc/ndctl.conf.d ] && cp -r /etc/ndctl.conf.d "$root/etc/" || true

# Modules: nfit, pmem, btt, device-dax and everything they depend on.
kmods=$work/kroot/lib/modules/$krel
depmod -b "$work/kroot" "$krel" || die "depmod over $kpkg failed"
wanted="nfit nd_pmem nd_btt dax_pmem device_dax kmem"
list=$(for m in $wanted; do modprobe -C /dev/null -d "$work/kroot" -S "$krel" --show-depends "$m"; done \
    | awk '$1 == "insmod" {print $2}' | sort -u)
[ -n "$list" ] || die "could not resolve the NVDIMM modules in $kpkg"
for ko in $list; do
    rel=${ko#"$work/kroot"}
    install -D -m 0644 "$ko" "$root$rel"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$kmods/$f" ] && cp "$kmods/$f" "$root/lib/modules/$krel/"
done
depmod -b "$root" "$krel" || die "depmod over the initramfs module subset failed"
echo "$krel" >"$root/etc/kernel-release"

install -m 0755 "$here/init" "$root/init"

(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -9n) >"$work/initramfs.cpio.gz"

# --- publish ---------------------------------------------------------------
mkdir -p "$out"
mv "$work/vmlinux" "$work/bzImage" "$work/initramfs.cpio.gz" "$out/"
echo "$krel" >"$out/kernel-release"
echo "$key_src" >"$out/packages"
echo "$host_key" >"$out/host-key"
for ko in $list; do basename "$ko"; done >"$out/modules"
touch "$out/done"
ln -sfn "$key" "$cache/current"
# Older builds are dead weight (~45 MB each); the recipe can always rebuild them.
for old in "$cache"/????????????????; do
    [ "$old" = "$out" ] || [ ! -f "$old/done" ] || rm -rf "$old"
done
log "done: $(du -sh "$out" | cut -f1)"
echo "$out"
