//! What one KVM memslot of a sparse file window costs on this host, by size: the time
//! KVM_SET_USER_MEMORY_REGION takes and the kernel memory it allocates (vmalloc'ed
//! per-page metadata: on a shadow-paging KVM such as this host's kvm_pvm, KVM allocates
//! the slot's reverse map — 8 bytes per 4 KiB page — when the slot is created).
//! Nothing of the file is read: the mapping is MAP_SHARED|MAP_NORESERVE and never touched.
//! Run: cargo run --release -p vnvdimm-selftest --example memslot_cost [SIZE_GIB...]

mod host_stats;

use std::os::fd::AsRawFd;
use std::time::Instant;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::Kvm;

const GIB: u64 = 1 << 30;

/// A /proc/meminfo field in KiB.
fn meminfo(field: &str) -> u64 {
    host_stats::kib("/proc/meminfo", field)
}

fn main() {
    let sizes: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1, 16, 64, 256, 1024] } else { sizes };
    let dir = tempfile::tempdir().expect("temp dir");
    println!("{:>9} {:>12} {:>10} {:>14} {:>14}", "slot GiB", "ioctl ms", "ms/GiB", "kernel MiB", "MiB/GiB");
    for gib in sizes {
        let size = gib * GIB;
        let path = dir.path().join("window.img");
        let file = std::fs::File::options().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        file.set_len(size).unwrap();
        // SAFETY: a fresh shared mapping of our own file, unmapped below, never dereferenced.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        let kvm = Kvm::new().expect("/dev/kvm");
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        let before = meminfo("MemAvailable:");
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 1 << 40,
            memory_size: size,
            userspace_addr: ptr as u64,
        };
        let t = Instant::now();
        // SAFETY: the mapping outlives the VM (dropped before munmap below).
        unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let used = before.saturating_sub(meminfo("MemAvailable:")) as f64 / 1024.0;
        println!("{gib:>9} {ms:>12.1} {:>10.2} {used:>14.0} {:>14.2}", ms / gib as f64, used / gib as f64);
        drop(vm);
        // SAFETY: unmapping the mapping made above, no longer used by anyone.
        unsafe { libc::munmap(ptr, size as usize) };
    }
}
