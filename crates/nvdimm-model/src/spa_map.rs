//! The guest's view of the platform's address space: the system-address ranges the NFIT
//! publishes (one per interleave set, one per DIMM outside any set) and the mapping
//! between system addresses and (DIMM, DIMM offset). Everything that translates — ARS
//! records, Translate SPA, error injection and clear, the host API, machine-check
//! addresses — goes through here.
//!
//! Storage is a separate matter: each DIMM's backing file is mapped at its placement
//! (`DimmPlacement::spa_base`), and the members of a set are placed one after another,
//! so a set's range is stored in its members' files in system-address order. The guest
//! cannot tell (it sees only system addresses), and it needs no mapping per line; see
//! docs/interleave-sets.md. [`SpaMap::storage_of`] gives where a system address is stored.

use crate::config::PlatformConfig;
use crate::interleave::Geometry;
use crate::layout::PlatformLayout;
use crate::nfit::proximity_domain;

/// One system-address range of the NFIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaWindow {
    pub base: u64,
    pub len: u64,
    /// DIMM indices in way order; one for a DIMM outside any set.
    pub members: Vec<usize>,
    /// Interleave line; the DIMM size for a single DIMM (one line, no interleave).
    pub line: u64,
    /// The interleave set this range is, if any.
    pub set: Option<usize>,
    /// NFIT SPA range index (non-zero).
    pub range_index: u16,
    pub proximity_domain: u32,
}

impl SpaWindow {
    pub fn end(&self) -> u64 {
        self.base + self.len
    }

    pub fn contains(&self, spa: u64) -> bool {
        (self.base..self.end()).contains(&spa)
    }

    fn geometry(&self) -> Geometry {
        Geometry { base: self.base, ways: self.members.len() as u64, line: self.line }
    }
}

/// A DIMM-offset range: `len` bytes from `offset` of DIMM `dimm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimmSpan {
    pub dimm: usize,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaMap {
    windows: Vec<SpaWindow>,
    /// Per DIMM: (window index, way).
    dimm_at: Vec<(usize, usize)>,
    /// Per DIMM: where its backing file is mapped and how long it is.
    storage: Vec<(u64, u64)>,
}

impl SpaMap {
    /// Builds the map of a validated configuration and layout. Windows come in DIMM
    /// order, a set where its lowest-numbered member is, so a platform without sets
    /// numbers its ranges exactly as before sets existed.
    pub fn new(config: &PlatformConfig, layout: &PlatformLayout) -> Self {
        let mut windows: Vec<SpaWindow> = Vec::new();
        let mut dimm_at = vec![(usize::MAX, 0); config.dimms.len()];
        for index in 0..config.dimms.len() {
            if dimm_at[index].0 != usize::MAX {
                continue;
            }
            let set = config.set_of_dimm(index);
            let (members, line) = match set {
                Some(s) => (config.interleave_sets[s].dimms.clone(), config.interleave_sets[s].line_size),
                None => (vec![index], config.dimms[index].size),
            };
            let window = windows.len();
            for (way, &m) in members.iter().enumerate() {
                dimm_at[m] = (window, way);
            }
            let size = config.dimms[members[0]].size;
            windows.push(SpaWindow {
                base: layout.dimms[members[0]].spa_base,
                len: size * members.len() as u64,
                line,
                set,
                range_index: window as u16 + 1,
                proximity_domain: proximity_domain(members[0]),
                members,
            });
        }
        let storage = config.dimms.iter().zip(&layout.dimms).map(|(d, p)| (p.spa_base, d.size)).collect();
        SpaMap { windows, dimm_at, storage }
    }

    pub fn windows(&self) -> &[SpaWindow] {
        &self.windows
    }

    /// The range DIMM `dimm` is part of.
    pub fn window_of_dimm(&self, dimm: usize) -> Option<&SpaWindow> {
        self.windows.get(self.dimm_at.get(dimm)?.0)
    }

    /// The index of the window holding all of `[spa, spa + len)`; `None` for an empty,
    /// wrapping or straddling range.
    pub fn window_at(&self, spa: u64, len: u64) -> Option<usize> {
        let end = spa.checked_add(len).filter(|_| len > 0)?;
        self.windows.iter().position(|w| w.base <= spa && end <= w.end())
    }

    /// The DIMM and DIMM offset of the byte at `spa`.
    pub fn locate_byte(&self, spa: u64) -> Option<(usize, u64)> {
        let w = self.windows.iter().find(|w| w.contains(spa))?;
        let (way, offset) = w.geometry().locate(spa);
        Some((w.members[way as usize], offset))
    }

    /// Bytes from `spa` on that follow it on the same DIMM without a break (to the end
    /// of its line): Translate SPA's "translated length".
    pub fn contiguous_from(&self, spa: u64) -> Option<u64> {
        let w = self.windows.iter().find(|w| w.contains(spa))?;
        Some((w.line - (spa - w.base) % w.line).min(w.end() - spa))
    }

    /// The system address of byte `offset` of DIMM `dimm` (which must exist).
    pub fn spa_of(&self, dimm: usize, offset: u64) -> u64 {
        let (window, way) = self.dimm_at[dimm];
        self.windows[window].geometry().spa_of(way as u64, offset)
    }

    /// The DIMM ranges `[spa, spa + len)` covers, one per DIMM it touches, in way order;
    /// `None` unless the range lies inside one window.
    pub fn dimm_spans(&self, spa: u64, len: u64) -> Option<Vec<DimmSpan>> {
        let w = &self.windows[self.window_at(spa, len)?];
        let g = w.geometry();
        let spans = w
            .members
            .iter()
            .enumerate()
            .filter_map(|(way, &dimm)| {
                let (lo, hi) = g.way_span(way as u64, spa, spa + len);
                (hi > lo).then_some(DimmSpan { dimm, offset: lo, len: hi - lo })
            })
            .collect();
        Some(spans)
    }

    /// The system ranges holding `[offset, offset + len)` of DIMM `dimm`, ascending
    /// (one per line for a set member, one in all otherwise).
    pub fn spa_pieces(&self, dimm: usize, offset: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
        let (window, way) = self.dimm_at[dimm];
        let w = &self.windows[window];
        w.geometry().spa_pieces(way as u64, offset, len)
    }

    /// Where the byte at system address `spa` is stored: (DIMM whose backing file holds
    /// it, offset in that file).
    pub fn storage_of(&self, spa: u64) -> Option<(usize, u64)> {
        self.storage.iter().position(|&(base, size)| (base..base + size).contains(&spa)).map(|d| (d, spa - self.storage[d].0))
    }

    /// True when no DIMM is in a set: storage and DIMM offsets coincide.
    pub fn is_identity(&self) -> bool {
        self.windows.iter().all(|w| w.members.len() == 1)
    }
}

/// Merges per-source ascending `(spa, len)` streams into one ascending stream, tagging
/// each piece with its source's index (k-way merge: the first n pieces cost n steps,
/// however long the sources are).
pub fn merge_by_spa<I: Iterator<Item = (u64, u64)>>(sources: Vec<I>) -> impl Iterator<Item = (usize, u64, u64)> {
    let mut sources: Vec<std::iter::Peekable<I>> = sources.into_iter().map(Iterator::peekable).collect();
    std::iter::from_fn(move || {
        let next = (0..sources.len()).filter_map(|i| Some((i, *sources[i].peek()?))).min_by_key(|&(_, (spa, _))| spa)?;
        sources[next.0].next();
        Some((next.0, next.1 .0, next.1 .1))
    })
}

#[cfg(test)]
mod tests;
