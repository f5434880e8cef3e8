//! Per-DIMM media error (poison) ranges, in byte offsets from the start of the DIMM.
//!
//! Ranges are kept merged: after every change no two ranges overlap or touch, so the
//! set has one canonical form (what ARS reports and what the state file stores).
//! A `BTreeMap` from start to end keeps lookups and ARS paging logarithmic even with
//! hundreds of thousands of ranges.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most separate ranges one DIMM may hold. A guest can create ranges (error injection,
/// clears that split ranges), so the set must be bounded; a million ranges is far more
/// than any real DIMM reports and costs well under 100 MB.
pub const MAX_RANGES: usize = 1_000_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PoisonError {
    #[error("poison range at {offset:#x} has zero length; give a length of at least one byte")]
    ZeroLength { offset: u64 },
    #[error("poison range at {offset:#x} with length {len:#x} runs past the end of the 64-bit address space")]
    Overflow { offset: u64, len: u64 },
    #[error("the DIMM already holds the maximum of {max} separate poison ranges; clear some first")]
    Capacity { max: usize },
}

/// A merged set of bad byte ranges. Serialized as a list of `[offset, length]` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<[u64; 2]>", try_from = "Vec<[u64; 2]>")]
pub struct PoisonSet {
    /// start -> end (exclusive). Invariant: ranges are non-empty, disjoint and not adjacent.
    ranges: BTreeMap<u64, u64>,
    /// Sum of all range lengths, kept so `total_bytes` is O(1).
    bytes: u64,
}

fn end_of(offset: u64, len: u64) -> Result<u64, PoisonError> {
    if len == 0 {
        return Err(PoisonError::ZeroLength { offset });
    }
    offset.checked_add(len).ok_or(PoisonError::Overflow { offset, len })
}

impl PoisonSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of separate (merged) ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Total poisoned bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    /// Marks `[offset, offset + len)` bad, merging with overlapping or adjacent ranges.
    /// On error nothing changes.
    pub fn insert(&mut self, offset: u64, len: u64) -> Result<(), PoisonError> {
        let end = end_of(offset, len)?;
        let mut start = offset;
        let mut new_end = end;
        // Ranges that touch [start, end]: possibly one starting before `start`, then
        // every range starting at or before `end`.
        let mut absorbed: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = self.ranges.range(..start).next_back() {
            if e >= start {
                absorbed.push((s, e));
            }
        }
        absorbed.extend(self.ranges.range(start..=end).map(|(&s, &e)| (s, e)));
        if absorbed.is_empty() && self.ranges.len() >= MAX_RANGES {
            return Err(PoisonError::Capacity { max: MAX_RANGES });
        }
        for &(s, e) in &absorbed {
            start = start.min(s);
            new_end = new_end.max(e);
            self.ranges.remove(&s);
            self.bytes -= e - s;
        }
        self.ranges.insert(start, new_end);
        self.bytes += new_end - start;
        Ok(())
    }

    /// Clears `[offset, offset + len)`, splitting ranges as needed. Returns how many
    /// poisoned bytes were actually cleared. A clear that would split a range while the
    /// set is full fails with `Capacity` (nothing changes), so a guest cannot grow the
    /// set without bound by punching holes.
    pub fn remove(&mut self, offset: u64, len: u64) -> Result<u64, PoisonError> {
        let end = end_of(offset, len)?;
        let mut hit: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = self.ranges.range(..offset).next_back() {
            if e > offset {
                hit.push((s, e));
            }
        }
        hit.extend(self.ranges.range(offset..end).map(|(&s, &e)| (s, e)));
        let splits = hit.iter().any(|&(s, e)| s < offset && e > end);
        if splits && self.ranges.len() >= MAX_RANGES {
            return Err(PoisonError::Capacity { max: MAX_RANGES });
        }
        let mut removed = 0;
        for (s, e) in hit {
            self.ranges.remove(&s);
            removed += e.min(end) - s.max(offset);
            if s < offset {
                self.ranges.insert(s, offset);
            }
            if e > end {
                self.ranges.insert(end, e);
            }
        }
        self.bytes -= removed;
        Ok(removed)
    }

    /// The ranges that overlap or touch `[offset, end]`: all that an insert or remove
    /// of `[offset, end)` can change. O(log n + k).
    pub fn touching(&self, offset: u64, end: u64) -> Vec<(u64, u64)> {
        let mut found: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = self.ranges.range(..offset).next_back() {
            if e >= offset {
                found.push((s, e));
            }
        }
        found.extend(self.ranges.range(offset..=end).map(|(&s, &e)| (s, e)));
        found
    }

    /// Undoes an insert or remove of `[offset, end)`, given what [`PoisonSet::touching`]
    /// returned before it: everything it could have changed lies in the span of both.
    pub fn restore(&mut self, offset: u64, end: u64, saved: &[(u64, u64)]) {
        let lo = saved.first().map_or(offset, |&(s, _)| s.min(offset));
        let hi = saved.last().map_or(end, |&(_, e)| e.max(end));
        let inside: Vec<u64> = self.ranges.range(lo..hi).map(|(&s, _)| s).collect();
        for s in inside {
            if let Some(e) = self.ranges.remove(&s) {
                self.bytes -= e - s;
            }
        }
        for &(s, e) in saved {
            self.ranges.insert(s, e);
            self.bytes += e - s;
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.bytes = 0;
    }

    /// Whether the byte at `offset` is poisoned.
    pub fn contains(&self, offset: u64) -> bool {
        self.ranges.range(..=offset).next_back().is_some_and(|(_, &e)| e > offset)
    }

    /// Whether any byte of `[offset, offset + len)` is poisoned. Zero or overflowing
    /// lengths are clipped to the address space (a zero length overlaps nothing).
    pub fn overlaps(&self, offset: u64, len: u64) -> bool {
        self.within(offset, offset.saturating_add(len)).next().is_some()
    }

    /// All ranges in ascending order, as `(offset, length)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e - s))
    }

    /// Ranges overlapping `[start, end)` in ascending order, as `(offset, length)`,
    /// NOT clipped to the window. Costs O(log n) to find the first range, so callers
    /// can page through huge sets by restarting at the end of the last range seen.
    pub fn within(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let before = self
            .ranges
            .range(..start)
            .next_back()
            .filter(|(_, &e)| e > start && start < end)
            .map(|(&s, &e)| (s, e - s));
        let inside =
            if start < end { Some(self.ranges.range((Bound::Included(start), Bound::Excluded(end)))) } else { None };
        before.into_iter().chain(inside.into_iter().flatten().map(|(&s, &e)| (s, e - s)))
    }

    /// Ranges overlapping `[start, end)`, clipped to it.
    pub fn clipped(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.within(start, end).map(move |(s, l)| {
            let cs = s.max(start);
            let ce = (s + l).min(end);
            (cs, ce - cs)
        })
    }
}

impl From<PoisonSet> for Vec<[u64; 2]> {
    fn from(set: PoisonSet) -> Self {
        set.iter().map(|(s, l)| [s, l]).collect()
    }
}

impl TryFrom<Vec<[u64; 2]>> for PoisonSet {
    type Error = PoisonError;
    /// Stored lists are re-validated and re-merged: a hand-edited state file may hold
    /// overlapping or unsorted pairs, and those are accepted; invalid pairs are not.
    fn try_from(pairs: Vec<[u64; 2]>) -> Result<Self, Self::Error> {
        let mut set = PoisonSet::new();
        for [offset, len] in pairs {
            set.insert(offset, len)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges(set: &PoisonSet) -> Vec<(u64, u64)> {
        set.iter().collect()
    }

    #[test]
    fn adjacent_and_overlapping_ranges_merge() {
        let mut set = PoisonSet::new();
        set.insert(100, 10).unwrap();
        set.insert(110, 10).unwrap();
        assert_eq!(ranges(&set), vec![(100, 20)]);
        set.insert(300, 5).unwrap();
        set.insert(90, 215).unwrap();
        assert_eq!(ranges(&set), vec![(90, 215)]);
        assert_eq!(set.total_bytes(), 215);
    }

    #[test]
    fn remove_splits_and_counts_only_poisoned_bytes() {
        let mut set = PoisonSet::new();
        set.insert(0, 100).unwrap();
        set.insert(200, 100).unwrap();
        assert_eq!(set.remove(50, 10).unwrap(), 10);
        assert_eq!(ranges(&set), vec![(0, 50), (60, 40), (200, 100)]);
        assert_eq!(set.remove(90, 150).unwrap(), 10 + 40);
        assert_eq!(ranges(&set), vec![(0, 50), (60, 30), (240, 60)]);
        assert_eq!(set.remove(1000, 10).unwrap(), 0);
        assert_eq!(set.total_bytes(), 140);
    }

    #[test]
    fn invalid_ranges_are_errors() {
        let mut set = PoisonSet::new();
        assert_eq!(set.insert(5, 0), Err(PoisonError::ZeroLength { offset: 5 }));
        assert_eq!(set.insert(u64::MAX, 2), Err(PoisonError::Overflow { offset: u64::MAX, len: 2 }));
        assert_eq!(set.remove(u64::MAX - 1, 2), Err(PoisonError::Overflow { offset: u64::MAX - 1, len: 2 }));
        assert!(set.is_empty());
    }

    #[test]
    fn capacity_is_enforced_without_change() {
        let mut set = PoisonSet::new();
        for i in 0..MAX_RANGES as u64 {
            set.ranges.insert(i * 4, i * 4 + 3);
        }
        set.bytes = 3 * MAX_RANGES as u64;
        let before = set.clone();
        assert_eq!(set.insert(u64::MAX - 10, 1), Err(PoisonError::Capacity { max: MAX_RANGES }));
        assert_eq!(set.remove(5, 1), Err(PoisonError::Capacity { max: MAX_RANGES }));
        assert_eq!(set, before);
        // Merging into an existing range and clearing a whole range still work when full.
        set.insert(2, 1).unwrap();
        assert_eq!(set.len(), MAX_RANGES);
        assert_eq!(set.remove(8, 3).unwrap(), 3);
        assert_eq!(set.len(), MAX_RANGES - 1);
    }

    #[test]
    fn within_starts_at_a_straddling_range() {
        let mut set = PoisonSet::new();
        set.insert(10, 10).unwrap();
        set.insert(30, 10).unwrap();
        set.insert(50, 10).unwrap();
        assert_eq!(set.within(15, 35).collect::<Vec<_>>(), vec![(10, 10), (30, 10)]);
        assert_eq!(set.clipped(15, 35).collect::<Vec<_>>(), vec![(15, 5), (30, 5)]);
        assert_eq!(set.within(20, 30).count(), 0);
        assert_eq!(set.within(40, 40).count(), 0);
        assert!(set.contains(59) && !set.contains(60) && !set.contains(9));
        assert!(set.overlaps(0, 11) && !set.overlaps(0, 10) && !set.overlaps(12, 0));
    }

    #[test]
    fn serde_is_pairs_and_remerges() {
        let mut set = PoisonSet::new();
        set.insert(4096, 512).unwrap();
        set.insert(0, 256).unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, "[[0,256],[4096,512]]");
        let back: PoisonSet = serde_json::from_str("[[4096,512],[0,200],[100,156],[4600,8]]").unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<PoisonSet>("[[1,0]]").is_err());
        assert!(serde_json::from_str::<PoisonSet>("[[18446744073709551615,1]]").is_err());
    }

    /// Naive model: a sorted set of poisoned unit cells.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        Remove(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..200, 1u64..30).prop_map(|(o, l)| Op::Insert(o, l)),
            (0u64..200, 1u64..30).prop_map(|(o, l)| Op::Remove(o, l)),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec(op(), 0..60), qs in 0u64..240, ql in 0u64..40) {
            let mut set = PoisonSet::new();
            let mut model = std::collections::BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(o, l) => {
                        set.insert(o, l).unwrap();
                        model.extend(o..o + l);
                    }
                    Op::Remove(o, l) => {
                        let expect = (o..o + l).filter(|b| model.contains(b)).count() as u64;
                        prop_assert_eq!(set.remove(o, l).unwrap(), expect);
                        for b in o..o + l { model.remove(&b); }
                    }
                }
                // Canonical form: sorted, non-empty, neither overlapping nor touching.
                let r = ranges(&set);
                for w in r.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 < w[1].0);
                }
                let cells: std::collections::BTreeSet<u64> = r.iter().flat_map(|&(s, l)| s..s + l).collect();
                prop_assert_eq!(&cells, &model);
                prop_assert_eq!(set.total_bytes(), model.len() as u64);
            }
            prop_assert_eq!(set.overlaps(qs, ql), (qs..qs + ql).any(|b| model.contains(&b)));
            prop_assert_eq!(set.contains(qs), model.contains(&qs));
            let clipped: std::collections::BTreeSet<u64> =
                set.clipped(qs, qs + ql).flat_map(|(s, l)| s..s + l).collect();
            let expect: std::collections::BTreeSet<u64> = model.range(qs..qs + ql).copied().collect();
            prop_assert_eq!(clipped, expect);
            let json = serde_json::to_string(&set).unwrap();
            prop_assert_eq!(serde_json::from_str::<PoisonSet>(&json).unwrap(), set);
        }
    }
}
