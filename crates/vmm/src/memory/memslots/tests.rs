use super::*;
use super::test_memory::TestMemory;

const GIB: u64 = 1 << 30;
const P: u64 = PAGE_SIZE;

fn window(gpa: u64, size: u64, host: u64) -> DimmWindow {
    // SAFETY: planner tests never touch the host range.
    unsafe { DimmWindow::new(gpa, size, host, false) }
}

fn poison(ranges: &[(u64, u64)]) -> PoisonSet {
    let mut set = PoisonSet::new();
    for &(o, l) in ranges {
        set.insert(o, l).unwrap();
    }
    set
}

/// (gpa, size) of every region.
fn spans(plan: &MemslotPlan) -> Vec<(u64, u64)> {
    plan.regions.iter().map(|r| (r.gpa, r.size)).collect()
}

fn holes(plan: &MemslotPlan) -> Vec<(u64, u64)> {
    plan.holes.iter().map(|h| (h.gpa, h.size)).collect()
}

const BASE: u64 = 8 * GIB;
const HOST: u64 = 0x7f00_0000_0000;

fn one(size: u64, ranges: &[(u64, u64)]) -> MemslotPlan {
    plan(&[window(BASE, size, HOST)], &[&poison(ranges)], usize::MAX).unwrap()
}

#[test]
fn no_poison_is_one_slot_per_window() {
    let w = [
        window(BASE, GIB, HOST),
        window(BASE + GIB, 2 * GIB, HOST + GIB),
    ];
    let empty = PoisonSet::new();
    let p = plan(&w, &[&empty, &empty], 8).unwrap();
    assert_eq!(spans(&p), vec![(BASE, GIB), (BASE + GIB, 2 * GIB)]);
    assert_eq!(p.regions[1].host_addr, HOST + GIB);
    assert_eq!(p.regions[1].dimm, 1);
    assert!(p.holes.is_empty());
}

#[test]
fn one_poisoned_byte_takes_out_its_page() {
    let p = one(16 * P, &[(5 * P + 123, 1)]);
    assert_eq!(spans(&p), vec![(BASE, 5 * P), (BASE + 6 * P, 10 * P)]);
    assert_eq!(holes(&p), vec![(BASE + 5 * P, P)]);
    assert_eq!(
        p.regions[1].host_addr,
        HOST + 6 * P,
        "host address moves with the guest address"
    );
}

#[test]
fn a_range_across_a_page_boundary_takes_out_both_pages() {
    let p = one(16 * P, &[(2 * P - 8, 16)]);
    assert_eq!(holes(&p), vec![(BASE + P, 2 * P)]);
    assert_eq!(spans(&p), vec![(BASE, P), (BASE + 3 * P, 13 * P)]);
}

#[test]
fn separate_ranges_in_adjacent_or_same_pages_form_one_hole() {
    // Not adjacent as byte ranges (PoisonSet keeps them apart), adjacent as pages.
    let p = one(
        16 * P,
        &[
            (3 * P + 10, 1),
            (3 * P + 100, 1),
            (4 * P + 4000, 8),
            (5 * P, 1),
        ],
    );
    assert_eq!(holes(&p), vec![(BASE + 3 * P, 3 * P)]);
    assert_eq!(spans(&p), vec![(BASE, 3 * P), (BASE + 6 * P, 10 * P)]);
}

#[test]
fn first_and_last_pages() {
    let p = one(16 * P, &[(0, 1), (16 * P - 1, 1)]);
    assert_eq!(spans(&p), vec![(BASE + P, 14 * P)]);
    assert_eq!(holes(&p), vec![(BASE, P), (BASE + 15 * P, P)]);
}

#[test]
fn a_fully_poisoned_window_has_no_slot_and_poison_past_the_end_is_ignored() {
    let p = one(4 * P, &[(0, 100 * P)]);
    assert!(p.regions.is_empty());
    assert_eq!(holes(&p), vec![(BASE, 4 * P)]);
    let p = one(4 * P, &[(10 * P, P)]);
    assert_eq!(spans(&p), vec![(BASE, 4 * P)]);
}

#[test]
fn unaligned_windows_and_wrong_dimm_counts_are_refused() {
    let empty = PoisonSet::new();
    for w in [
        window(BASE + 1, P, HOST),
        window(BASE, P + 1, HOST),
        window(BASE, P, HOST + 8),
    ] {
        assert!(matches!(
            plan(&[w], &[&empty], 9),
            Err(MemslotError::Unaligned { .. })
        ));
    }
    assert!(matches!(
        plan(&[window(BASE, P, HOST)], &[], 9),
        Err(MemslotError::DimmCount { .. })
    ));
}

/// The odd pages of the first 20,000 poisoned: 10,000 holes, 10,001 slots.
fn ten_thousand() -> PoisonSet {
    let mut set = PoisonSet::new();
    for i in 0..10_000u64 {
        set.insert((2 * i + 1) * P + 1, 1).unwrap();
    }
    set
}

#[test]
fn ten_thousand_poisoned_pages_and_the_slot_limit() {
    let set = ten_thousand();
    let w = [window(BASE, GIB, HOST)];
    let p = plan(&w, &[&set], 32_000).unwrap();
    assert_eq!(p.holes.len(), 10_000);
    assert_eq!(p.regions.len(), 10_001);
    assert_eq!(p.regions.last().unwrap().gpa, BASE + 20_000 * P);
    let err = plan(&w, &[&set], 10_000).unwrap_err();
    assert!(
        matches!(
            err,
            MemslotError::TooManySlots {
                needed: 10_001,
                limit: 10_000
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("clear poison"));
}

/// Random poison: regions and holes tile each window exactly, in order, and no two
/// holes or two regions touch (they would have been merged).
#[test]
fn plans_tile_the_windows() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let sizes = [(next() % 64 + 1) * P, (next() % 64 + 1) * P];
        let w = [
            window(BASE, sizes[0], HOST),
            window(BASE + GIB, sizes[1], HOST + GIB),
        ];
        let sets: Vec<PoisonSet> = (0..2)
            .map(|_| {
                let ranges: Vec<(u64, u64)> = (0..next() % 8)
                    .map(|_| (next() % (70 * P), next() % (3 * P) + 1))
                    .collect();
                poison(&ranges)
            })
            .collect();
        let p = plan(&w, &[&sets[0], &sets[1]], usize::MAX).unwrap();
        for (dimm, win) in w.iter().enumerate() {
            let mut pieces: Vec<(u64, u64, bool)> = p
                .regions
                .iter()
                .filter(|r| r.dimm == dimm)
                .map(|r| (r.gpa, r.size, true))
                .collect();
            pieces.extend(
                p.holes
                    .iter()
                    .filter(|h| h.dimm == dimm)
                    .map(|h| (h.gpa, h.size, false)),
            );
            pieces.sort();
            let mut at = win.gpa;
            let mut last_kind = None;
            for (gpa, size, mapped) in pieces {
                assert_eq!(gpa, at, "gap or overlap in {p:?}");
                assert_ne!(
                    last_kind,
                    Some(mapped),
                    "two touching pieces of one kind in {p:?}"
                );
                // A page is a hole exactly when some poisoned byte lies in it.
                for page in (gpa..gpa + size).step_by(P as usize) {
                    let off = page - win.gpa;
                    assert_eq!(
                        sets[dimm].overlaps(off, P),
                        !mapped,
                        "page {off:#x} of dimm {dimm}"
                    );
                }
                at += size;
                last_kind = Some(mapped);
            }
            assert_eq!(at, win.gpa + win.size);
        }
    }
}

#[derive(Default)]
struct Recorder {
    ops: Vec<(char, u64, u64)>,
    fail_after: Option<usize>,
}

impl SlotSink for Recorder {
    fn add(&mut self, r: &SlotRegion) -> io::Result<()> {
        self.op('+', r)
    }
    fn remove(&mut self, r: &SlotRegion) -> io::Result<()> {
        self.op('-', r)
    }
}

impl Recorder {
    fn op(&mut self, kind: char, r: &SlotRegion) -> io::Result<()> {
        if self.fail_after == Some(self.ops.len()) {
            return Err(io::Error::other("injected failure"));
        }
        self.ops.push((kind, r.gpa, r.size));
        Ok(())
    }
}

#[test]
fn updates_change_only_what_moved_and_clearing_restores_the_window() {
    let mut slots = PoisonSlots::new(vec![window(BASE, 16 * P, HOST)], 100);
    let mut sink = Recorder::default();
    let empty = PoisonSet::new();
    slots.update(&[&empty], &mut sink).unwrap();
    assert_eq!(sink.ops, vec![('+', BASE, 16 * P)]);

    sink.ops.clear();
    let one_page = poison(&[(4 * P, 1)]);
    let stats = slots.update(&[&one_page], &mut sink).unwrap();
    assert_eq!(
        sink.ops,
        vec![
            ('-', BASE, 16 * P),
            ('+', BASE, 4 * P),
            ('+', BASE + 5 * P, 11 * P)
        ]
    );
    assert_eq!(
        stats,
        ApplyStats {
            removed: 1,
            added: 2,
            slots: 2,
            holes: 1
        }
    );

    sink.ops.clear();
    let two_pages = poison(&[(4 * P, 1), (10 * P, 1)]);
    slots.update(&[&two_pages], &mut sink).unwrap();
    assert_eq!(
        sink.ops,
        vec![
            ('-', BASE + 5 * P, 11 * P),
            ('+', BASE + 5 * P, 5 * P),
            ('+', BASE + 11 * P, 5 * P)
        ]
    );
    assert_eq!(slots.classify(BASE + 10 * P + 8), Some((0, 10 * P + 8)));
    assert_eq!(slots.classify(BASE + 9 * P), None);

    sink.ops.clear();
    slots.update(&[&empty], &mut sink).unwrap();
    assert_eq!(sink.ops.iter().filter(|o| o.0 == '-').count(), 3);
    assert_eq!(sink.ops.last(), Some(&('+', BASE, 16 * P)));
    assert_eq!(slots.installed().count(), 1);
    assert_eq!(
        slots.classify(BASE + 10 * P),
        None,
        "cleared poison is ordinary memory again"
    );
}

#[test]
fn a_failing_sink_leaves_the_installed_set_truthful() {
    let mut slots = PoisonSlots::new(vec![window(BASE, 16 * P, HOST)], 100);
    slots
        .update(&[&PoisonSet::new()], &mut Recorder::default())
        .unwrap();
    // Removal succeeds, the first addition fails.
    let mut sink = Recorder {
        fail_after: Some(1),
        ..Default::default()
    };
    let err = slots
        .update(&[&poison(&[(4 * P, 1)])], &mut sink)
        .unwrap_err();
    assert!(
        matches!(
            err,
            MemslotError::Apply {
                action: "adding",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(slots.installed().count(), 0);
    // The next update adds both pieces and removes nothing.
    let mut sink = Recorder::default();
    slots.update(&[&poison(&[(4 * P, 1)])], &mut sink).unwrap();
    assert_eq!(
        sink.ops,
        vec![('+', BASE, 4 * P), ('+', BASE + 5 * P, 11 * P)]
    );
}

#[test]
fn too_many_slots_changes_nothing() {
    let mut slots = PoisonSlots::new(vec![window(BASE, GIB, HOST)], 5_000);
    let mut sink = Recorder::default();
    slots.update(&[&PoisonSet::new()], &mut sink).unwrap();
    sink.ops.clear();
    assert!(matches!(
        slots.update(&[&ten_thousand()], &mut sink),
        Err(MemslotError::TooManySlots { .. })
    ));
    assert!(sink.ops.is_empty());
    assert_eq!(slots.installed().count(), 1);
    assert_eq!(slots.classify(BASE + 1), None);
}

#[test]
fn mmio_reads_and_writes_inside_windows() {
    let mem = TestMemory::new(8 * P as usize);
    mem.write(3 * P, &[1, 2, 3, 4, 5, 6, 7, 8]);
    // SAFETY: `mem` outlives `slots`.
    let w = unsafe { DimmWindow::new(BASE, 8 * P, mem.host_addr(), false) };
    let mut slots = PoisonSlots::new(vec![w], 100);
    slots
        .update(&[&poison(&[(5 * P + 16, 1)])], &mut Recorder::default())
        .unwrap();

    let mut data = [0u8; 8];
    assert_eq!(
        slots.on_mmio_read(BASE + 3 * P, &mut data),
        Some(WindowAccess::Served {
            dimm: 0,
            offset: 3 * P
        })
    );
    assert_eq!(data, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        slots.on_mmio_read(BASE + 5 * P + 8, &mut data),
        Some(WindowAccess::Poisoned {
            dimm: 0,
            offset: 5 * P + 8
        })
    );
    assert_eq!(data, [0xFF; 8]);
    // An access straddling into the poisoned page counts as poisoned.
    assert!(matches!(
        slots.on_mmio_read(BASE + 5 * P - 4, &mut data),
        Some(WindowAccess::Poisoned { .. })
    ));
    assert_eq!(slots.on_mmio_read(BASE - 8, &mut data), None);
    assert_eq!(slots.on_mmio_read(BASE + 8 * P, &mut data), None);

    // Writes land in the backing mapping, poisoned or not.
    let value = 0xDEAD_BEEF_0BAD_F00Du64.to_le_bytes();
    assert_eq!(
        slots.on_mmio_write(BASE + 5 * P, &value),
        Some(WindowAccess::Poisoned {
            dimm: 0,
            offset: 5 * P
        })
    );
    assert_eq!(mem.read(5 * P, 8), value);
    // The last bytes of the window: the part past the end is dropped.
    assert!(matches!(
        slots.on_mmio_write(BASE + 8 * P - 4, &value),
        Some(WindowAccess::Served { .. })
    ));
    assert_eq!(mem.read(8 * P - 4, 4), &value[..4]);
}

#[test]
fn read_only_windows_drop_writes() {
    let mem = TestMemory::new(P as usize);
    // SAFETY: `mem` outlives `slots`.
    let w = unsafe { DimmWindow::new(BASE, P, mem.host_addr(), true) };
    let slots = PoisonSlots::new(vec![w], 10);
    assert_eq!(
        slots.on_mmio_write(BASE, &[1; 8]),
        Some(WindowAccess::ReadOnly { dimm: 0, offset: 0 })
    );
    assert_eq!(mem.read(0, 8), [0; 8]);
}

// Lazy registration: pieces of 4 pages in a 16-page window (gpa BASE), 2 pieces per DIMM below.

const PIECE: u64 = 4 * P;

fn lazy(size: u64, max: usize) -> PoisonSlots {
    PoisonSlots::lazy(vec![window(BASE, size, HOST)], max, PIECE)
}

#[test]
fn lazy_windows_have_no_slots_until_a_piece_is_touched() {
    let mut slots = lazy(16 * P, 100);
    let mut sink = Recorder::default();
    let stats = slots.update(&[&PoisonSet::new()], &mut sink).unwrap();
    assert!(sink.ops.is_empty(), "{:?}", sink.ops);
    assert_eq!(stats.slots, 0);
    assert!(slots.is_unregistered(BASE + 6 * P));
    assert!(!slots.is_unregistered(BASE + 16 * P), "outside the window");

    // A touch in the second piece registers exactly that piece, aligned to the window.
    let stats = slots
        .activate(BASE + 6 * P + 12, &mut sink)
        .unwrap()
        .unwrap();
    assert_eq!(sink.ops, vec![('+', BASE + 4 * P, 4 * P)]);
    assert_eq!((stats.added, stats.slots), (1, 1));
    assert_eq!(slots.installed().next().unwrap().host_addr, HOST + 4 * P);
    assert!(!slots.is_unregistered(BASE + 7 * P));
    assert!(slots.is_unregistered(BASE + 8 * P));
    assert_eq!(slots.active_bytes(), 4 * P);
    // Twice is a no-op.
    assert_eq!(slots.activate(BASE + 5 * P, &mut sink).unwrap(), None);
    // The neighbour is its own slot: registering it does not touch the first one.
    sink.ops.clear();
    slots.activate(BASE + 8 * P, &mut sink).unwrap().unwrap();
    assert_eq!(sink.ops, vec![('+', BASE + 8 * P, 4 * P)]);
    // An update with unchanged poison changes nothing.
    sink.ops.clear();
    slots.update(&[&PoisonSet::new()], &mut sink).unwrap();
    assert!(sink.ops.is_empty(), "{:?}", sink.ops);
}

#[test]
fn the_last_piece_of_a_window_may_be_short() {
    let mut slots = lazy(10 * P, 100);
    let mut sink = Recorder::default();
    slots.update(&[&PoisonSet::new()], &mut sink).unwrap();
    slots.activate(BASE + 9 * P, &mut sink).unwrap();
    assert_eq!(sink.ops, vec![('+', BASE + 8 * P, 2 * P)]);
}

#[test]
fn poison_inside_an_unregistered_piece_is_a_hole_and_stays_out_when_registered() {
    let mut slots = lazy(16 * P, 100);
    let mut sink = Recorder::default();
    let set = poison(&[(9 * P + 8, 1)]);
    slots.update(&[&set], &mut sink).unwrap();
    assert!(
        sink.ops.is_empty(),
        "poison in an unregistered piece adds no slot"
    );
    // Poisoned, not merely unregistered: classify says so before any touch.
    assert_eq!(slots.classify(BASE + 9 * P), Some((0, 9 * P)));
    assert_eq!(slots.classify(BASE + 10 * P), None);
    assert!(slots.is_unregistered(BASE + 10 * P));

    slots.activate(BASE + 11 * P, &mut sink).unwrap();
    assert_eq!(
        sink.ops,
        vec![('+', BASE + 8 * P, P), ('+', BASE + 10 * P, 2 * P)],
        "the piece minus its hole"
    );
    assert_eq!(slots.classify(BASE + 9 * P + 4), Some((0, 9 * P + 4)));

    // Clearing re-plans the registered piece only: one slot again, the others untouched.
    sink.ops.clear();
    let stats = slots.update(&[&PoisonSet::new()], &mut sink).unwrap();
    assert_eq!(
        sink.ops,
        vec![
            ('-', BASE + 8 * P, P),
            ('-', BASE + 10 * P, 2 * P),
            ('+', BASE + 8 * P, 4 * P)
        ]
    );
    assert_eq!((stats.slots, stats.holes), (1, 0));
    assert!(slots.is_unregistered(BASE));
}

#[test]
fn host_poison_in_registered_and_unregistered_pieces() {
    let mut slots = lazy(16 * P, 100);
    let mut sink = Recorder::default();
    slots.update(&[&PoisonSet::new()], &mut sink).unwrap();
    slots.activate(BASE, &mut sink).unwrap();
    sink.ops.clear();
    // Page 2 (registered piece 0) and page 13 (unregistered piece 3).
    let set = poison(&[(2 * P, 1), (13 * P, 1)]);
    let stats = slots.update(&[&set], &mut sink).unwrap();
    assert_eq!(
        sink.ops,
        vec![
            ('-', BASE, 4 * P),
            ('+', BASE, 2 * P),
            ('+', BASE + 3 * P, P)
        ]
    );
    assert_eq!((stats.slots, stats.holes), (2, 2));
    assert_eq!(slots.classify(BASE + 13 * P), Some((0, 13 * P)));
    assert!(slots.is_unregistered(BASE + 12 * P));
}

#[test]
fn lazy_activation_keeps_the_slot_limit() {
    // Three slots allowed: piece 0 with a hole in the middle takes two.
    let mut slots = lazy(16 * P, 3);
    let mut sink = Recorder::default();
    slots.update(&[&poison(&[(P, 1)])], &mut sink).unwrap();
    slots.activate(BASE, &mut sink).unwrap();
    slots.activate(BASE + 4 * P, &mut sink).unwrap();
    assert_eq!(slots.installed().count(), 3);
    sink.ops.clear();
    let err = slots.activate(BASE + 8 * P, &mut sink).unwrap_err();
    assert!(
        matches!(
            err,
            MemslotError::TooManySlots {
                needed: 4,
                limit: 3
            }
        ),
        "{err}"
    );
    assert!(sink.ops.is_empty());
    assert!(
        slots.is_unregistered(BASE + 8 * P),
        "a refused piece stays unregistered"
    );
    // Poison splitting a registered piece past the limit is refused as before.
    assert!(matches!(
        slots.update(&[&poison(&[(P, 1), (5 * P, 1)])], &mut sink),
        Err(MemslotError::TooManySlots {
            needed: 4,
            limit: 3
        })
    ));
    // Poison in an unregistered piece costs no slot, so it is accepted.
    slots
        .update(&[&poison(&[(P, 1), (13 * P, 1)])], &mut sink)
        .unwrap();
    assert_eq!(slots.installed().count(), 3);
}

#[test]
fn lazy_mmio_accesses_say_unregistered_until_activated() {
    let mem = TestMemory::new(8 * P as usize);
    mem.write(5 * P, &[9; 8]);
    // SAFETY: `mem` outlives `slots`.
    let w = unsafe { DimmWindow::new(BASE, 8 * P, mem.host_addr(), false) };
    let mut slots = PoisonSlots::lazy(vec![w], 100, PIECE);
    let mut sink = Recorder::default();
    slots.update(&[&poison(&[(6 * P, 1)])], &mut sink).unwrap();

    let mut data = [0u8; 8];
    assert_eq!(
        slots.on_mmio_read(BASE + 5 * P, &mut data),
        Some(WindowAccess::Unregistered {
            dimm: 0,
            offset: 5 * P
        })
    );
    assert_eq!(data, [9; 8], "served from the backing mapping");
    // A poisoned page in the unregistered piece still reads as poisoned.
    assert_eq!(
        slots.on_mmio_read(BASE + 6 * P, &mut data),
        Some(WindowAccess::Poisoned {
            dimm: 0,
            offset: 6 * P
        })
    );
    assert_eq!(data, [0xFF; 8]);
    assert_eq!(
        slots.on_mmio_write(BASE + 7 * P, &[7; 8]),
        Some(WindowAccess::Unregistered {
            dimm: 0,
            offset: 7 * P
        })
    );
    assert_eq!(mem.read(7 * P, 8), [7; 8]);
    // An access straddling into the unregistered piece from a registered one.
    slots.activate(BASE, &mut sink).unwrap();
    assert!(matches!(
        slots.on_mmio_read(BASE + 4 * P - 4, &mut data),
        Some(WindowAccess::Unregistered { .. })
    ));
    slots.activate(BASE + 4 * P, &mut sink).unwrap();
    assert_eq!(
        slots.on_mmio_read(BASE + 5 * P, &mut data),
        Some(WindowAccess::Served {
            dimm: 0,
            offset: 5 * P
        })
    );
}

#[test]
fn eager_windows_are_never_unregistered() {
    let mut slots = PoisonSlots::new(vec![window(BASE, 16 * P, HOST)], 100);
    let mut sink = Recorder::default();
    assert!(!slots.is_unregistered(BASE));
    assert_eq!(slots.activate(BASE, &mut sink).unwrap(), None);
    assert!(sink.ops.is_empty());
}
