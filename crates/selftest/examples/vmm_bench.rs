//! Timings for docs/benchmarks.md, printed as text:
//! 1. VMM setup to first guest instruction with four 1 TiB sparse DIMMs (the guest's
//!    first instruction is an OUT to the exit port, so "first exit" = "first instruction"),
//!    and the pages of the backing files resident afterwards (must be 0); the windows
//!    are registered lazily, so then the cost of a first touch: registering one 1 GiB
//!    piece (what `PmemSlots` does on the first exit in it), over 64 pieces;
//! 2. the doorbell round trip and flush-hint latency as the bare-metal guest sees them
//!    (rdtsc), beside an empty MMIO exit measured the same way, against plain fdatasync
//!    calls on the same file with the same page dirtied first (see `flush_rounds`).
//!
//! Run: `cargo build --release -p vnvdimm-selftest --example vmm_bench &&
//! VNV_T0_NS=$(date +%s%N) target/release/examples/vmm_bench`

mod host_stats;

use std::os::fd::AsRawFd;
use std::time::Instant;

use vm_memory::VolatileMemory;

use host_stats::kib;
use vnvdimm_vmm::devices::bus::BusDevice;
use vnvdimm_vmm::devices::flush_hint::FlushHint;
use vnvdimm_selftest::{firmware, harness};

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
    let run = harness::run(&mut vm).unwrap();
    let first = start.elapsed();
    println!("four 1 TiB sparse DIMMs: VM built in {built:?}, first guest instruction (exit) after {first:?} ({})", run.outcome);
    // The shell's clock before exec (`VNV_T0_NS=$(date +%s%N)`), so exec, dynamic
    // linking and everything before `main` are counted too.
    if let Some(t0) = std::env::var("VNV_T0_NS").ok().and_then(|v| v.parse::<u128>().ok()) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let at_exit = now.saturating_sub(start.elapsed().as_nanos() - first.as_nanos());
        println!("process start (VNV_T0_NS) to first guest instruction: {:.1} ms", at_exit.saturating_sub(t0) as f64 / 1e6);
    }
    let host_kernel = available_before.saturating_sub(kib("/proc/meminfo", "MemAvailable:"));
    println!(
        "VMM resident: VmRSS {} KiB, VmHWM {} KiB; host memory taken meanwhile (MemAvailable drop, mostly KVM memslot metadata): {} MiB",
        kib("/proc/self/status", "VmRSS:"),
        kib("/proc/self/status", "VmHWM:"),
        host_kernel / 1024
    );
    let pieces = 64u64;
    let spa: Vec<u64> = vm.machine().memory_map.layout.dimms.iter().map(|d| d.spa_base).collect();
    let available = kib("/proc/meminfo", "MemAvailable:");
    let mut times = Vec::new();
    for i in 0..pieces {
        // Spread over the four windows and over each window's 1 TiB.
        let gpa = spa[(i % 4) as usize] + (i / 4) * (61 << 30);
        let t = Instant::now();
        vm.pmem().activate(gpa).unwrap().expect("a piece not registered yet");
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
        vm.pmem().slot_count()
    );
    drop(vm);
    let resident: usize = paths.iter().map(|p| resident_pages(p, 1 << 30)).sum();
    println!("backing-file pages resident in the first GiB of each file after the run: {resident}");

    flush_rounds();
}

/// Guest-side timings of firmware/bench.S and the host-side flush baselines, in
/// `ROUNDS` rounds (a fresh VM on the same backing file each round) so that drift of
/// the shared host's disk hits both sides alike; per round, the host measurements
/// alternate fdatasync and our handler, each after dirtying the same page through the
/// VM's own shared mapping the guest dirtied it through.
fn flush_rounds() {
    const ROUNDS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for round in 0..ROUNDS {
        let machine = harness::sparse_machine(dir.path(), 1, 64 << 20).unwrap();
        let mut vm = harness::boot(machine, firmware::BENCH, Box::new(std::io::sink())).unwrap();
        let tsc_khz = vm.vcpus()[0].get_tsc_khz().unwrap_or(0) as f64;
        let run = harness::run(&mut vm).unwrap();
        assert_eq!(run.report.len(), 9, "bench.S reports N and four tick counts: {:?} ({})", run.report, run.outcome);
        let n = run.report[0];
        let per = |word: usize| run.u64_at(word).unwrap() as f64 / f64::from(n) / tsc_khz * 1e3; // us
        let (plain, handler) = host_flushes(&vm, n);
        let row = FlushRow {
            doorbell: per(1),
            clean_flush: per(3),
            empty_exit: per(5),
            guest_flush: per(7),
            plain,
            handler,
        };
        if round == 0 {
            println!("guest TSC {tsc_khz} kHz, N = {n} per measurement, {ROUNDS} rounds");
        }
        println!("round {round}: {row}");
        rows.push(row);
    }
    let median = |f: fn(&FlushRow) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let guest = median(|r| r.guest_flush);
    let plain = median(|r| r.plain);
    let exit = median(|r| r.empty_exit);
    let ours = median(|r| r.handler - r.plain);
    println!("medians over the rounds (microseconds):");
    println!("doorbell round trip (root F0 _DSM) seen by the guest: {:.1}", median(|r| r.doorbell));
    println!("flush-hint store, nothing dirty, seen by the guest: {:.1}", median(|r| r.clean_flush));
    println!("empty MMIO exit (store to an unclaimed page) seen by the guest: {exit:.1}");
    println!("flush-hint store after dirtying one page, seen by the guest: {guest:.1}");
    println!("plain fdatasync after dirtying one page (host, same fd, same mapping): {plain:.1}");
    println!("our handler beyond its fdatasync (host, handler - plain per round): {ours:.2}");
    println!(
        "guest flush / plain fdatasync = {:.3} (target <= 1.10); (guest flush - empty exit) / plain = {:.3}",
        guest / plain,
        (guest - exit) / plain
    );
}

struct FlushRow {
    doorbell: f64,
    clean_flush: f64,
    empty_exit: f64,
    guest_flush: f64,
    plain: f64,
    handler: f64,
}

impl std::fmt::Display for FlushRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "doorbell {:.1} us, clean flush {:.1} us, empty exit {:.1} us, dirty flush (guest) {:.1} us, \
             plain fdatasync {:.1} us, handler {:.1} us",
            self.doorbell, self.clean_flush, self.empty_exit, self.guest_flush, self.plain, self.handler
        )
    }
}

/// Mean microseconds of `n` plain fdatasync calls and of `n` calls of the flush-hint
/// device's write (what the guest's store runs), alternating, each after one store
/// into the same page of DIMM 0 the guest dirties (bench.S DIRTY_OFFSET).
fn host_flushes(vm: &vnvdimm_vmm::vm::Vm, n: u32) -> (f64, f64) {
    const DIRTY_OFFSET: u64 = 0x1000;
    let window = &vm.memory().pmem[0];
    let mut hint = FlushHint::new(0, vm.memory().clone(), vm.platform().clone(), vm.stats().flushes.clone());
    let (mut plain, mut handler) = (0.0, 0.0);
    for i in 0..n {
        window.region.get_slice(DIRTY_OFFSET as usize, 8).unwrap().copy_from(&u64::from(i).to_le_bytes());
        let t = Instant::now();
        // SAFETY: fdatasync on the window's own open descriptor.
        assert_eq!(unsafe { libc::fdatasync(window.file.as_raw_fd()) }, 0);
        plain += t.elapsed().as_secs_f64();
        window.region.get_slice(DIRTY_OFFSET as usize, 8).unwrap().copy_from(&u64::from(i + 1).to_le_bytes());
        let t = Instant::now();
        hint.write(0, &1u64.to_le_bytes());
        handler += t.elapsed().as_secs_f64();
    }
    (plain * 1e6 / f64::from(n), handler * 1e6 / f64::from(n))
}
