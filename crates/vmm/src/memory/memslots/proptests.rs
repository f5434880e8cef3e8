//! Properties of the memslot plan over random windows, poison and activated pieces:
//! the slots tile every window (or every activated piece) except its poisoned pages,
//! never map a byte of a poisoned page, never overlap, and map each guest address to
//! the host address of the same window offset.

use proptest::prelude::*;

use super::*;

const P: u64 = PAGE_SIZE;

/// Up to three windows of 1..48 pages, each at its own 1 GiB-aligned guest address,
/// with poison ranges (byte offset, length) and lazily activated pieces (page index,
/// pages) inside each.
/// One window: its size in pages, its poison ranges, its active pieces.
type WindowSpec = (u64, Vec<(u64, u64)>, Vec<(u64, u64)>);

fn setup() -> impl Strategy<Value = Vec<WindowSpec>> {
    prop::collection::vec(
        (1u64..48).prop_flat_map(|pages| {
            let size = pages * P;
            (
                Just(pages),
                prop::collection::vec((0..size, 1u64..3 * P), 0..6),
                prop::collection::vec((0..pages, 1u64..8), 0..4),
            )
        }),
        1..4,
    )
}

fn build(spec: &[WindowSpec]) -> (Vec<DimmWindow>, Vec<PoisonSet>, Vec<Active>) {
    let mut windows = Vec::new();
    let mut sets = Vec::new();
    let mut actives = Vec::new();
    for (i, (pages, poison, pieces)) in spec.iter().enumerate() {
        let size = pages * P;
        let gpa = (i as u64 + 4) << 30;
        // SAFETY: the plan never touches host memory; the address is only arithmetic here.
        windows.push(unsafe { DimmWindow::new(gpa, size, 0x7f00_0000_0000 + ((i as u64) << 32), i == 1) });
        let mut set = PoisonSet::new();
        for &(offset, len) in poison {
            set.insert(offset, len.min(size - offset)).unwrap();
        }
        sets.push(set);
        let mut active = Active::new();
        for &(first, count) in pieces {
            let end = (first + count).min(*pages);
            // Pieces as PoisonSlots activates them: disjoint.
            if active.iter().all(|(&o, &l)| end * P <= o || first * P >= o + l) {
                active.insert(first * P, (end - first) * P);
            }
        }
        actives.push(active);
    }
    (windows, sets, actives)
}

fn poisoned_page(sets: &[PoisonSet], dimm: usize, page: u64) -> bool {
    sets[dimm].within(page * P, (page + 1) * P).next().is_some()
}

/// Which region (index) covers window `dimm`'s page, if any; panics on two.
fn covering(plan: &MemslotPlan, w: &DimmWindow, page: u64) -> Option<usize> {
    let gpa = w.gpa + page * P;
    let hits: Vec<usize> =
        plan.regions.iter().enumerate().filter(|(_, r)| gpa >= r.gpa && gpa < r.gpa + r.size).map(|(i, _)| i).collect();
    assert!(hits.len() <= 1, "page {gpa:#x} is in {} slots", hits.len());
    hits.first().copied()
}

fn check(windows: &[DimmWindow], sets: &[PoisonSet], active: &[Active], plan: &MemslotPlan) {
    for r in &plan.regions {
        let w = &windows[r.dimm];
        assert!(r.size > 0 && r.gpa % P == 0 && r.size % P == 0, "{r:?}");
        assert!(r.gpa >= w.gpa && r.gpa + r.size <= w.gpa + w.size, "{r:?} outside {w:?}");
        assert_eq!(r.host_addr - w.host_addr, r.gpa - w.gpa, "host address of the same offset: {r:?}");
        assert_eq!(r.readonly, w.readonly);
    }
    for (dimm, w) in windows.iter().enumerate() {
        for page in 0..w.size / P {
            let poisoned = poisoned_page(sets, dimm, page);
            let in_active = active[dimm].iter().any(|(&o, &l)| page * P >= o && page * P < o + l);
            let covered = covering(plan, w, page).is_some();
            let in_hole = plan.hole_at(w.gpa + page * P).is_some();
            assert_eq!(in_hole, poisoned, "dimm {dimm} page {page}: a hole exactly where poison is");
            assert_eq!(covered, in_active && !poisoned, "dimm {dimm} page {page}: poisoned {poisoned}, active {in_active}");
        }
    }
}

proptest! {
    #[test]
    fn eager_plans_tile_every_window_around_its_poison(spec in setup()) {
        let (windows, sets, _) = build(&spec);
        let refs: Vec<&PoisonSet> = sets.iter().collect();
        let plan = plan(&windows, &refs, usize::MAX).unwrap();
        let whole: Vec<Active> = windows.iter().map(|w| Active::from([(0, w.size)])).collect();
        check(&windows, &sets, &whole, &plan);
    }

    #[test]
    fn lazy_plans_cover_the_activated_pieces_only(spec in setup()) {
        let (windows, sets, active) = build(&spec);
        let refs: Vec<&PoisonSet> = sets.iter().collect();
        let plan = plan_active(&windows, &refs, &active, usize::MAX).unwrap();
        check(&windows, &sets, &active, &plan);
    }

    #[test]
    fn a_slot_limit_is_an_error_never_a_partial_plan(spec in setup(), limit in 0usize..4) {
        let (windows, sets, _) = build(&spec);
        let refs: Vec<&PoisonSet> = sets.iter().collect();
        let full = plan(&windows, &refs, usize::MAX).unwrap();
        match plan(&windows, &refs, limit) {
            Ok(p) => prop_assert!(p.regions.len() <= limit && p == full),
            Err(MemslotError::TooManySlots { limit: l, .. }) => prop_assert!(l == limit && full.regions.len() > limit),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
