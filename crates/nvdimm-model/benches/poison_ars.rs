//! Poison set and ARS paging at 100,000 ranges.
//!
//! Run: `cargo bench -p nvdimm-model --bench poison_ars -- --quick`
//! Also prints the heap bytes per stored range, measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use nvdimm_model::clock::ManualClock;
use nvdimm_model::dsm::ROOT_UUID;
use nvdimm_model::mailbox::DsmRequest;
use nvdimm_model::poison::PoisonSet;
use nvdimm_model::{NvdimmPlatform, PlatformConfig, PlatformLayout};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const RANGES: u64 = 100_000;
const STRIDE: u64 = 8192;
const WINDOW: u64 = 4 << 30;

/// Range `i` of a scattered insertion order (a permutation of 0..RANGES).
fn scattered(i: u64) -> u64 {
    (i * 7919) % RANGES
}

fn poison_insert(c: &mut Criterion) {
    c.bench_function("poison insert 100k disjoint ranges (scattered order)", |b| {
        b.iter(|| {
            let mut set = PoisonSet::new();
            for i in 0..RANGES {
                set.insert(scattered(i) * STRIDE, 512).unwrap();
            }
            black_box(set.len())
        })
    });
    c.bench_function("poison insert 100k ranges merging into one", |b| {
        b.iter(|| {
            let mut set = PoisonSet::new();
            for i in 0..RANGES {
                set.insert(scattered(i) * 256, 256).unwrap();
            }
            assert_eq!(set.len(), 1);
            black_box(set.total_bytes())
        })
    });
}

fn root(p: &mut NvdimmPlatform, function: u32, input: Vec<u8>) -> Vec<u8> {
    p.call_dsm(&DsmRequest { handle: 0, uuid: ROOT_UUID, revision: 1, function, input })
}

fn start(spa: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&spa.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    v
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Full scrub of DIMM 0 then every page, continuing like Linux; returns the record count.
fn scrub_all_pages(p: &mut NvdimmPlatform, clock: &ManualClock) -> u64 {
    root(p, 2, start(WINDOW, 1 << 30));
    let mut records = 0;
    loop {
        clock.advance(Duration::from_secs(1));
        let out = root(p, 3, Vec::new());
        records += u64::from(u32::from_le_bytes(out[44..48].try_into().unwrap()));
        if out[2] == 3 && out[42] & 1 != 0 {
            root(p, 2, start(u64_at(&out, 24), u64_at(&out, 32)));
        } else {
            return records;
        }
    }
}

fn ars_paging(c: &mut Criterion) {
    let config = PlatformConfig::default_in(Path::new("/nonexistent"));
    let layout = PlatformLayout::packed(&config, WINDOW, 1 << 30, 0xFE00_0000, 0x3FF0_0000, 0x3FF0_0028);
    let clock = Arc::new(ManualClock::default());
    let mut p = NvdimmPlatform::ephemeral_with_clock(config, layout, clock.clone()).unwrap();
    for i in 0..RANGES {
        p.add_poison(0, scattered(i) * STRIDE, 512).unwrap();
    }
    assert_eq!(scrub_all_pages(&mut p, &clock), RANGES);
    c.bench_function("ARS full scrub + Query ARS Status of all pages, 100k ranges", |b| {
        b.iter(|| black_box(scrub_all_pages(&mut p, &clock)))
    });
    c.bench_function("Query ARS Status, one full page from 100k ranges", |b| {
        root(&mut p, 2, start(WINDOW, 1 << 30));
        clock.advance(Duration::from_secs(1));
        b.iter(|| black_box(root(&mut p, 3, Vec::new()).len()))
    });
}

fn memory_per_range() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut set = PoisonSet::new();
    for i in 0..RANGES {
        set.insert(scattered(i) * STRIDE, 512).unwrap();
    }
    let scattered_bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(set);
    let before = LIVE.load(Ordering::Relaxed);
    let mut set = PoisonSet::new();
    for i in 0..RANGES {
        set.insert(i * STRIDE, 512).unwrap();
    }
    let ascending_bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(set);
    eprintln!(
        "poison set heap per range: {:.1} bytes (scattered inserts), {:.1} bytes (ascending inserts)",
        scattered_bytes as f64 / RANGES as f64,
        ascending_bytes as f64 / RANGES as f64
    );
}

fn benches(c: &mut Criterion) {
    memory_per_range();
    poison_insert(c);
    ars_paging(c);
}

criterion_group!(group, benches);
criterion_main!(group);
