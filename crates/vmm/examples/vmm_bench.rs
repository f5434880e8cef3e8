//! Timings for docs/benchmarks.md, printed as text:
//! 1. VMM setup to first guest instruction with four 1 TiB sparse DIMMs (the guest's
//!    first instruction is an OUT to the exit port, so "first exit" = "first instruction"),
//!    and the pages of the backing files resident afterwards (must be 0); the windows
//!    are registered lazily, so then the cost of a first touch: registering one 1 GiB
//!    piece (what `PmemSlots` does on the first exit in it), over 64 pieces;
//! 2. the doorbell round trip and flush-hint latency as the bare-metal guest sees them
//!    (rdtsc around N calls), against N plain fdatasync calls on the same file.
//! Run: cargo run --release -p vnvdimm-vmm --example vmm_bench

mod host_stats;

use std::os::fd::AsRawFd;
use std::time::Instant;

use host_stats::kib;
use vnvdimm_vmm::{firmware, harness};

fn resident_pages(path: &std::path::Path, len: u64) -> usize {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: read-only mapping of a file we own for mincore only.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), len as usize, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0);
        assert_ne!(p, libc::MAP_FAILED);
        let mut vec = vec![0u8; (len / 4096) as usize];
        libc::mincore(p, len as usize, vec.as_mut_ptr());
        libc::munmap(p, len as usize);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let available_before = kib("/proc/meminfo", "MemAvailable:");
    let tib = 1u64 << 40;
    let machine = harness::sparse_machine(dir.path(), 4, tib).unwrap();
    let paths: Vec<_> = machine.platform.dimms.iter().map(|d| d.path.clone()).collect();
    let start = Instant::now();
    let mut vm = harness::boot(machine, firmware::EXIT0, Box::new(std::io::sink())).unwrap();
    let built = start.elapsed();
    let run = harness::run(&mut vm, None).unwrap();
    let first = start.elapsed();
    println!("four 1 TiB sparse DIMMs: VM built in {built:?}, first guest instruction (exit) after {first:?} ({})", run.outcome);
    let host_kernel = available_before.saturating_sub(kib("/proc/meminfo", "MemAvailable:"));
    println!(
        "VMM resident: VmRSS {} KiB, VmHWM {} KiB; host memory taken meanwhile (MemAvailable drop, mostly KVM memslot metadata): {} MiB",
        kib("/proc/self/status", "VmRSS:"),
        kib("/proc/self/status", "VmHWM:"),
        host_kernel / 1024
    );
    let pieces = 64u64;
    let spa: Vec<u64> = vm.machine.memory_map.layout.dimms.iter().map(|d| d.spa_base).collect();
    let available = kib("/proc/meminfo", "MemAvailable:");
    let mut times = Vec::new();
    for i in 0..pieces {
        // Spread over the four windows and over each window's 1 TiB.
        let gpa = spa[(i % 4) as usize] + (i / 4) * (61 << 30);
        let t = Instant::now();
        vm.pmem.activate(gpa).unwrap().expect("a piece not registered yet");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let taken = available.saturating_sub(kib("/proc/meminfo", "MemAvailable:")) as f64 / 1024.0;
    println!(
        "first touch = registering a 1 GiB piece: median {:.2} ms, min {:.2} ms, max {:.2} ms over {pieces}; host memory {:.2} MiB per GiB; {} window slots now",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        taken / pieces as f64,
        vm.pmem.slot_count()
    );
    drop(vm);
    let resident: usize = paths.iter().map(|p| resident_pages(p, 1 << 30)).sum();
    println!("backing-file pages resident in the first GiB of each file after the run: {resident}");

    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, 64 << 20).unwrap();
    let path = machine.platform.dimms[0].path.clone();
    let mut vm = harness::boot(machine, firmware::BENCH, Box::new(std::io::sink())).unwrap();
    let tsc_khz = vm.vcpus[0].get_tsc_khz().unwrap_or(0) as f64;
    let run = harness::run(&mut vm, None).unwrap();
    let n = f64::from(run.report[0]);
    let per = |ticks: u64| ticks as f64 / n / tsc_khz * 1e3; // kHz ticks -> microseconds
    let doorbell = per(run.u64_at(1).unwrap());
    let flush = per(run.u64_at(3).unwrap());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let t = Instant::now();
    for _ in 0..run.report[0] {
        file.sync_data().unwrap();
    }
    let plain = t.elapsed().as_secs_f64() * 1e6 / n;
    println!("guest TSC {tsc_khz} kHz, N = {n}");
    println!("doorbell round trip (root F0 _DSM) seen by the guest: {doorbell:.1} us");
    println!("flush-hint store seen by the guest: {flush:.1} us; plain fdatasync of the same file: {plain:.1} us");
}
