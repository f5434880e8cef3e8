#!/bin/sh
# Builds vnvdimm's default Linux guest from Debian packages only, installing nothing on
# the host: every package is fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` into a scratch directory.
#
#   kernel     Debian's unmodified 6.1 kernel: bzImage + the ELF vmlinux inside it (PVH boot)
#   initramfs  busybox, kmod, ndctl, daxctl, keyctl (keyutils: ndctl's passphrase keys), mkfs.ext4 (e2fsprogs), mkfs.xfs (xfsprogs) with
#              their shared libraries; the libnvdimm/nfit/pmem/btt/dax/kmem/ext4/xfs/pvpanic modules
#              with a depmod index; /init and the guest agent (/sbin/vnv-agent); the
#              nested test host's init (/sbin/vnv-nested-init) with kvm_amd, 9p and its holder VM
#              (/sbin/vnv-kvm-hold, from vnv-kvm-hold.c); the
#              poison tests' probe (/sbin/vnv-mmap-probe, built from vnv-mmap-probe.c)
#
# Usage: images/build-guest.sh [CACHE_DIR]     (default: images/cache next to this script)
# Prints the directory holding vmlinux, bzImage, initramfs.cpio.gz, kernel-release and
# wanted-modules (MODULES below, one a line).
# The result is cached under CACHE_DIR/<key>, key = the versions of every package used + the
# text of this recipe, init and vnv-agent, so a second run only computes the key (and not
# even that while neither the recipe nor the apt lists changed). CACHE_DIR/current points at
# the last build.
#
# Needs: apt-get, apt-cache, dpkg-deb (Debian 12 apt lists that know the packages), cpio,
# xz-utils, gzip, gcc with libc6-dev (static). Override the kernel with VNV_KERNEL_PKG=linux-image-6.1.0-NN-amd64-unsigned.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/cache}
log() { echo "build-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

# User-space packages whose programs go into the initramfs; their library dependencies
# (lib* packages, recursively) are added below.
TOP_PKGS="busybox-static kmod ndctl daxctl e2fsprogs xfsprogs numactl keyutils libc6"
# Modules (with their dependencies). crc32c_generic: ext4, jbd2 and xfs ask the crypto API
# for "crc32c" at mount time, and qemu64 has no SSE4.2 for crc32c-intel.
MODULES="nfit nd_pmem nd_btt dax_pmem device_dax kmem ext4 xfs crc32c_generic pvpanic_mmio"
# The same initramfs boots the nested test host (images/nested-init, docs/nested-host.md):
# KVM for an emulated AMD CPU with SVM, and 9p over virtio to reach the host's files.
# They are listed apart (CACHE_DIR/.../nested-modules): a test guest's CPU has no SVM.
NESTED_MODULES="kvm_amd virtio_pci 9pnet_virtio 9p"

# --- fast path -------------------------------------------------------------
# Asking apt costs seconds; skip it while neither the apt lists nor the recipe changed.
recipe_hash=$(cat "$0" "$here/init" "$here/vnv-agent" "$here/nested-init" "$here/vnv-mmap-probe.c" "$here/vnv-kvm-hold.c" | sha256sum | cut -c1-12)
if [ -z "${VNV_KERNEL_PKG:-}" ] && [ -f "$cache/current/done" ] && [ -f "$cache/current/recipe-hash" ] \
    && [ "$(cat "$cache/current/recipe-hash")" = "$recipe_hash" ] \
    && [ "$cache/current/done" -nt /var/lib/apt/lists ]; then
    readlink -f "$cache/current"
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio xz gzip gcc; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install -y apt dpkg cpio xz-utils gzip)"
done

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
krel=${kpkg#linux-image-}; krel=${krel%-unsigned}

# --- which user-space packages ---------------------------------------------
# Breadth first, one apt-cache call per level; only library packages are followed (the
# programs' other dependencies, like debconf or perl, are not needed in an initramfs).
pkgs=""
level=$TOP_PKGS
while [ -n "$level" ]; do
    pkgs="$pkgs $level"
    level=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances $level 2>/dev/null \
        | awk '$1 ~ /^(Pre)?Depends:$/ && $2 !~ /^</ {print $2}' \
        | grep -E '^(lib|zlib1g)' | sort -u \
        | while read -r p; do case " $pkgs " in *" $p "*) ;; *) echo "$p" ;; esac; done)
done
pkgs=$(echo "$kpkg $pkgs" | tr ' ' '\n' | grep . | sort -u)

# Candidate versions of all of them in one call: "pkg=version" lines.
versions=$(apt-cache policy $pkgs | awk '/^[^ ]/ {sub(":$", "", $1); p = $1} /Candidate:/ {print p "=" $2}')
echo "$versions" | grep -q '=(none)' && die "apt has no candidate for: $(echo "$versions" | grep '=(none)' | tr '\n' ' ')"
[ "$(echo "$versions" | wc -l)" -eq "$(echo "$pkgs" | wc -l)" ] || die "apt-cache policy did not report every package: $pkgs"

key_src="$(echo "$versions" | tr '\n' ' ')recipe=$recipe_hash"
key=$(echo "$key_src" | sha256sum | cut -c1-16)
out=$cache/$key
publish_current() {
    echo "$recipe_hash" >"$out/recipe-hash"
    touch "$out/done"
    ln -sfn "$key" "$cache/current"
}
if [ -f "$out/done" ]; then
    publish_current
    echo "$out"
    exit 0
fi

started=$(date +%s)
log "building $out"
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build.XXXXXX")
chmod 0755 "$work"  # apt-get download drops privileges to _apt when run as root
trap 'rm -rf "$work"' EXIT

# --- download and unpack ---------------------------------------------------
mkdir -p "$work/debs" "$work/stage" "$work/kroot"
chmod 0777 "$work/debs"
(cd "$work/debs" && apt-get download $versions >&2 2>"$work/apt.err") \
    || die "apt-get download failed: $(cat "$work/apt.err")"
for deb in "$work"/debs/*.deb; do
    case $(basename "$deb") in
        linux-image-*) dpkg-deb -x "$deb" "$work/kroot" ;;
        *) dpkg-deb -x "$deb" "$work/stage" ;;
    esac
done
stage=$work/stage
ld_so=$stage/lib64/ld-linux-x86-64.so.2
[ -e "$ld_so" ] || die "libc6 did not provide /lib64/ld-linux-x86-64.so.2"
libpath=$stage/lib/x86_64-linux-gnu:$stage/usr/lib/x86_64-linux-gnu
# Runs a program from the unpacked packages with their own loader and libraries.
stage_run() { name=$1; bin=$2; shift 2; "$ld_so" --library-path "$libpath" --argv0 "$name" "$bin" "$@"; }

# --- kernel ----------------------------------------------------------------
cp "$work/kroot/boot/vmlinuz-$krel" "$work/bzImage"
# The bzImage payload is XZ: find the stream magic (FD 37 7A 58 5A 00) and decompress
# from there; xz stops at the end of the stream and complains about trailing data.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ' "$work/bzImage" | head -n1 | cut -d: -f1)
[ -n "$off" ] || die "no XZ stream in $kpkg's bzImage"
tail -c +$((off + 1)) "$work/bzImage" | xz -dc >"$work/vmlinux" 2>/dev/null || true
head -c 4 "$work/vmlinux" | grep -q 'ELF' || die "decompressed payload of the bzImage is not an ELF vmlinux"

# --- initramfs: programs and libraries ---------------------------------------
root=$work/root
mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/usr/sbin "$root"/etc "$root"/proc \
    "$root"/sys "$root"/dev "$root"/tmp "$root"/run "$root"/mnt "$root"/lib/modules \
    "$root"/lib64 "$root"/lib/x86_64-linux-gnu "$root"/usr/lib/x86_64-linux-gnu
install -m 0755 "$stage/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$applet" ] || [ -e "$root/bin/${applet##*/}" ] || ln -s /bin/busybox "$root/$applet"
done

# Installs programs (stage paths) at the same paths, with every library the loader
# resolves for them; a library found outside the stage means a missing package.
copy_with_libs() {
    for rel in "$@"; do
        [ -f "$stage$rel" ] || die "no $rel in the unpacked packages"
        rm -f "$root$rel"
        install -D -m 0755 "$stage$rel" "$root$rel"
        "$ld_so" --library-path "$libpath" --list "$stage$rel" >"$work/ldd.out" \
            || die "cannot resolve the libraries of $rel"
        awk '/=>/ {print $1, $3}' "$work/ldd.out" >"$work/libs"
        while read -r soname path; do
            case $path in
                "$stage"/*) ;;
                *) die "$rel needs $soname, which no unpacked package provides (got '$path')" ;;
            esac
            dest=$root${path#"$stage"}
            [ -e "$dest" ] || install -D -m 0755 "$(readlink -f "$path")" "$dest"
        done <"$work/libs"
    done
}
copy_with_libs /bin/kmod /usr/bin/ndctl /usr/bin/daxctl /usr/bin/numactl /sbin/mke2fs /sbin/e2fsck /sbin/tune2fs \
    /sbin/dumpe2fs /sbin/mkfs.xfs /sbin/xfs_repair /bin/keyctl
install -m 0755 "$(readlink -f "$ld_so")" "$root/lib64/ld-linux-x86-64.so.2"
for tool in modprobe depmod lsmod insmod rmmod modinfo; do
    rm -f "$root/bin/$tool" "$root/sbin/$tool"
    ln -s /bin/kmod "$root/sbin/$tool"
done
for fs in ext2 ext3 ext4; do rm -f "$root/sbin/mkfs.$fs"; ln -s mke2fs "$root/sbin/mkfs.$fs"; done
rm -f "$root/sbin/fsck.ext4"; ln -s e2fsck "$root/sbin/fsck.ext4"
# Configuration the tools read (ndctl/daxctl monitor and keys, mke2fs defaults).
for d in etc/ndctl etc/ndctl.conf.d etc/daxctl.conf.d usr/share/daxctl; do
    [ -d "$stage/$d" ] && mkdir -p "$root/$d" && cp -r "$stage/$d/." "$root/$d/"
done
[ -f "$stage/etc/mke2fs.conf" ] && cp "$stage/etc/mke2fs.conf" "$root/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
ln -sfn /proc/mounts "$root/etc/mtab"

# --- initramfs: modules --------------------------------------------------------
kmods=$work/kroot/lib/modules/$krel
stage_run depmod "$stage/bin/kmod" -b "$work/kroot" "$krel" || die "depmod over $kpkg failed"
# The .ko files (with dependencies) of the modules named.
module_files() {
    for m in "$@"; do
        stage_run modprobe "$stage/bin/kmod" -C /dev/null -d "$work/kroot" -S "$krel" --show-depends "$m" \
            || echo "MISSING $m"
    done | awk '$1 == "MISSING" {print "MISSING:" $2} $1 == "insmod" {print $2}' | sort -u
}
guest_list=$(module_files $MODULES)
list=$(module_files $MODULES $NESTED_MODULES)
case $list in *MISSING:*) die "$kpkg lacks modules: $(echo "$list" | grep MISSING: | tr '\n' ' ')" ;; esac
for ko in $list; do
    install -D -m 0644 "$ko" "$root${ko#"$work/kroot"}"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$kmods/$f" ] && cp "$kmods/$f" "$root/lib/modules/$krel/"
done
stage_run depmod "$stage/bin/kmod" -b "$root" "$krel" || die "depmod over the initramfs module subset failed"
echo "$krel" >"$root/etc/kernel-release"

install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/vnv-agent" "$root/sbin/vnv-agent"
install -m 0755 "$here/nested-init" "$root/sbin/vnv-nested-init"
# The poison-consumption tests' probe (maps a page, reports SIGBUS): no package has one.
gcc -static -O2 -o "$root/sbin/vnv-mmap-probe" "$here/vnv-mmap-probe.c" \
    || die "cannot build vnv-mmap-probe (apt-get install gcc libc6-dev)"
# The nested host's holder VM (keeps KVM's static keys on for L1's life): no package has one.
gcc -static -O2 -o "$root/sbin/vnv-kvm-hold" "$here/vnv-kvm-hold.c" \
    || die "cannot build vnv-kvm-hold (apt-get install gcc libc6-dev linux-libc-dev)"

(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0 | gzip -9n) >"$work/initramfs.cpio.gz"

# --- publish ---------------------------------------------------------------
mkdir -p "$out"
mv "$work/vmlinux" "$work/bzImage" "$work/initramfs.cpio.gz" "$out/"
echo "$krel" >"$out/kernel-release"
echo "$versions" >"$out/packages"
for ko in $guest_list; do basename "$ko" .ko; done >"$out/modules"
# What the image needs by name, for `vnvdimm run --kernel K --modules DIR`, which takes
# them (and their dependencies) from another kernel's modules.
echo $MODULES | tr ' ' '\n' >"$out/wanted-modules"
guest_words=" $(echo $guest_list) "
for ko in $list; do
    case $guest_words in *" $ko "*) ;; *) basename "$ko" .ko ;; esac
done >"$out/nested-modules"
(cd "$root" && find . ! -type d | sort) >"$out/contents"
publish_current
# Older builds are dead weight (~50 MB each); the recipe can always rebuild them.
for old in "$cache"/????????????????; do
    [ "$old" = "$out" ] || [ ! -f "$old/done" ] || rm -rf "$old"
done
log "done in $(($(date +%s) - started)) s: $(du -sh "$out" | cut -f1), initramfs $(du -h "$out/initramfs.cpio.gz" | cut -f1)"
echo "$out"
