//! Poison injection of 10,000 pages: planning the memslots and applying them, with a
//! sink that does nothing (the VMM's own cost) and with real KVM slots.
//!
//! Run: `cargo bench -p vnvdimm-vmm --bench memslots -- --quick`
//! The poisoned pages are the odd pages of the first 20,000 of a 1 GiB window, so no two
//! touch: 10,000 holes and 10,001 slots, the worst case for that many pages.

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use kvm_ioctls::Kvm;
use nvdimm_model::poison::PoisonSet;
use vm_memory::MmapRegion;
use vnvdimm_vmm::memory::memslots::{plan, DimmWindow, KvmSlots, PoisonSlots, SlotRegion, SlotSink, PAGE_SIZE};

const BASE: u64 = 8 << 30;
const WINDOW: u64 = 1 << 30;
const PAGES: u64 = 10_000;

struct NoOp;

impl SlotSink for NoOp {
    fn add(&mut self, _: &SlotRegion) -> io::Result<()> {
        Ok(())
    }
    fn remove(&mut self, _: &SlotRegion) -> io::Result<()> {
        Ok(())
    }
}

fn poisoned(pages: u64) -> PoisonSet {
    let mut set = PoisonSet::new();
    for i in 0..pages {
        set.insert((2 * i + 1) * PAGE_SIZE, 1).unwrap();
    }
    set
}

fn window(host: u64) -> DimmWindow {
    // SAFETY: the no-op benchmarks never touch the host range; the KVM one maps a vm-memory `MmapRegion`.
    unsafe { DimmWindow::new(BASE, WINDOW, host, false) }
}

fn planning(c: &mut Criterion) {
    let set = poisoned(PAGES);
    let w = [window(0x7f00_0000_0000)];
    let mut group = c.benchmark_group("memslots_10000_pages");
    group.bench_function("plan", |b| b.iter(|| black_box(plan(&w, &[&set], 32_000).unwrap())));

    // From an intact window to 10,000 holes: 1 removal, 10,001 additions.
    group.bench_function("plan_and_apply_noop_sink", |b| {
        b.iter_batched(
            || {
                let mut slots = PoisonSlots::new(w.to_vec(), 32_000);
                slots.update(&[&PoisonSet::new()], &mut NoOp).unwrap();
                slots
            },
            |mut slots| black_box(slots.update(&[&set], &mut NoOp).unwrap()),
            BatchSize::LargeInput,
        )
    });

    // One more page on top of 10,000: the cost of each later injection.
    let mut one_more = set.clone();
    one_more.insert(2 * PAGES * PAGE_SIZE + 2 * PAGE_SIZE, 1).unwrap();
    group.bench_function("one_more_page_noop_sink", |b| {
        b.iter_batched(
            || {
                let mut slots = PoisonSlots::new(w.to_vec(), 32_000);
                slots.update(&[&set], &mut NoOp).unwrap();
                slots
            },
            |mut slots| black_box(slots.update(&[&one_more], &mut NoOp).unwrap()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn real_kvm(c: &mut Criterion) {
    let Ok(kvm) = Kvm::new() else {
        eprintln!("memslots bench: /dev/kvm unavailable, real-slot benchmarks not run");
        return;
    };
    let set = poisoned(PAGES);
    let mem = MmapRegion::<()>::new(WINDOW as usize).expect("1 GiB NORESERVE mapping");
    let nr = kvm.get_nr_memslots();
    let mut group = c.benchmark_group("memslots_10000_pages_kvm");
    group.sample_size(10);
    // Each sample: a fresh VM with the window installed, then 10,000 holes punched.
    group.bench_function("apply_10000_holes", |b| {
        b.iter_batched(
            || {
                let vm = kvm.create_vm().unwrap();
                let mut slots = PoisonSlots::new(vec![window(mem.as_ptr() as u64)], nr - 1);
                let mut kvm_slots = KvmSlots::new(1, nr as u32);
                slots.update(&[&PoisonSet::new()], &mut kvm_slots.bind(&vm)).unwrap();
                (vm, slots, kvm_slots)
            },
            |(vm, mut slots, mut kvm_slots)| {
                black_box(slots.update(&[&set], &mut kvm_slots.bind(&vm)).unwrap());
                (vm, slots, kvm_slots)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(mem);
}

criterion_group!(benches, planning, real_kvm);
criterion_main!(benches);
