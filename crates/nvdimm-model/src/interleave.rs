//! Interleave sets: several DIMMs behind one system-address range, the range dealt out
//! to them round-robin in lines of `line_size` bytes (way 0 holds line 0, way 1 line 1,
//! ..., way 0 again line `ways`). `--interleave-set dimms=0,1,line=4K` parses here;
//! [`Geometry`] is the address arithmetic, with no knowledge of DIMMs or files.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{parse_size, DimmConfig, KIB, GIB};

pub const MIN_WAYS: usize = 2;
/// Intel platforms interleave at most 6 DIMMs per socket; Linux takes up to 32
/// mappings per region. Eight keeps every power of two a user might try.
pub const MAX_WAYS: usize = 8;
/// 4 KiB is what Intel App Direct platforms use and the smallest line a poisoned page
/// can be mapped around; 1 GiB the largest anyone configures.
pub const MIN_LINE: u64 = 4 * KIB;
pub const MAX_LINE: u64 = GIB;
pub const DEFAULT_LINE: u64 = 4 * KIB;

const SET_KEYS: &[&str] = &["dimms", "line"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InterleaveError {
    #[error("--interleave-set `{spec}`: {reason}")]
    Syntax { spec: String, reason: String },
    #[error("interleave set #{set}: {reason}")]
    Invalid { set: usize, reason: String },
}

/// One interleave set as the user gave it: its DIMMs in way order and the line size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterleaveSetConfig {
    /// DIMM indices; `dimms[k]` is way k (its first line is line k of the range).
    pub dimms: Vec<usize>,
    pub line_size: u64,
}

impl InterleaveSetConfig {
    /// Parses `dimms=0,1[,2,...][,line=4K]`: the numbers after `dimms=` run until the
    /// next `key=`.
    pub fn parse(spec: &str) -> Result<Self, InterleaveError> {
        let syntax = |reason: String| InterleaveError::Syntax { spec: spec.to_string(), reason };
        let mut dimms: Option<Vec<usize>> = None;
        let mut line: Option<u64> = None;
        let mut in_dimms = false;
        for token in spec.split(',') {
            match token.split_once('=') {
                Some(("dimms", value)) => {
                    if dimms.is_some() {
                        return Err(syntax("`dimms=` given twice".into()));
                    }
                    dimms = Some(vec![parse_index(value).map_err(syntax)?]);
                    in_dimms = true;
                }
                Some(("line", value)) => {
                    if line.is_some() {
                        return Err(syntax("`line=` given twice".into()));
                    }
                    line = Some(parse_size(value).map_err(|r| syntax(format!("line: `{value}`: {r}")))?);
                    in_dimms = false;
                }
                Some((key, _)) => {
                    return Err(syntax(format!("unknown key `{key}` (known: {})", SET_KEYS.join(", "))));
                }
                None if in_dimms => dimms.as_mut().expect("in dimms").push(parse_index(token).map_err(syntax)?),
                None => return Err(syntax(format!("`{token}` is not of the form key=value"))),
            }
        }
        let dimms = dimms.ok_or_else(|| syntax("missing `dimms=` (e.g. dimms=0,1)".into()))?;
        Ok(InterleaveSetConfig { dimms, line_size: line.unwrap_or(DEFAULT_LINE) })
    }

    pub fn ways(&self) -> usize {
        self.dimms.len()
    }

    /// Checks this set (number `set`) on its own and against the DIMMs it names.
    pub fn validate(&self, set: usize, dimms: &[DimmConfig]) -> Result<(), InterleaveError> {
        let invalid = |reason: String| InterleaveError::Invalid { set, reason };
        if !(MIN_WAYS..=MAX_WAYS).contains(&self.ways()) {
            return Err(invalid(format!(
                "{} DIMMs given; a set interleaves {MIN_WAYS} to {MAX_WAYS} DIMMs",
                self.ways()
            )));
        }
        let line = self.line_size;
        if !line.is_power_of_two() || !(MIN_LINE..=MAX_LINE).contains(&line) {
            return Err(invalid(format!("line size {line:#x} must be a power of two from 4 KiB to 1 GiB")));
        }
        for (way, &index) in self.dimms.iter().enumerate() {
            let Some(dimm) = dimms.get(index) else {
                return Err(invalid(format!("no nvdimm #{index}; there are {} (numbered from 0)", dimms.len())));
            };
            if self.dimms[..way].contains(&index) {
                return Err(invalid(format!("nvdimm #{index} is named twice")));
            }
            // Consecutive DIMMs keep every DIMM's window, NUMA node and proximity domain
            // in DIMM order on both backends (QEMU lays out its nodes in that order).
            if way > 0 && index != self.dimms[way - 1] + 1 {
                return Err(invalid(format!(
                    "nvdimm #{index} follows nvdimm #{}; a set's DIMMs are consecutive and ascending \
                     (e.g. dimms=2,3): order the --nvdimm options to match",
                    self.dimms[way - 1]
                )));
            }
            let first = &dimms[self.dimms[0]];
            if dimm.size != first.size {
                return Err(invalid(format!(
                    "nvdimm #{index} is {:#x} bytes but nvdimm #{} is {:#x}; the DIMMs of a set must be the same size",
                    dimm.size, self.dimms[0], first.size
                )));
            }
            if dimm.readonly != first.readonly {
                return Err(invalid(format!(
                    "nvdimm #{index} and nvdimm #{} differ in readonly; a set is writable or read-only as a whole",
                    self.dimms[0]
                )));
            }
            if !dimm.size.is_multiple_of(line) {
                return Err(invalid(format!(
                    "nvdimm #{index}'s size {:#x} is not a multiple of the line size {line:#x}",
                    dimm.size
                )));
            }
        }
        Ok(())
    }
}

fn parse_index(value: &str) -> Result<usize, String> {
    value.parse().map_err(|_| format!("`{value}` is not a DIMM number"))
}

/// The address arithmetic of one set: `ways` DIMMs of equal size behind the range at `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub base: u64,
    pub ways: u64,
    pub line: u64,
}

impl Geometry {
    /// The system address of byte `dpa` of way `way`.
    pub fn spa_of(&self, way: u64, dpa: u64) -> u64 {
        self.base + ((dpa / self.line) * self.ways + way) * self.line + dpa % self.line
    }

    /// (way, DIMM offset) of the byte at system address `spa` (which must be in the range).
    pub fn locate(&self, spa: u64) -> (u64, u64) {
        let offset = spa - self.base;
        let line = offset / self.line;
        (line % self.ways, (line / self.ways) * self.line + offset % self.line)
    }

    /// Bytes of way `way` that lie before range offset `offset`: equally, the DIMM
    /// offset of the first byte of `way` at or after `offset`.
    fn way_bytes_before(&self, way: u64, offset: u64) -> u64 {
        let stripe = self.ways * self.line;
        let into_stripe = offset % stripe;
        (offset / stripe) * self.line + into_stripe.saturating_sub(way * self.line).min(self.line)
    }

    /// The DIMM offsets of way `way` that the system range `[spa, end)` covers, as one
    /// interval (a contiguous system range meets each DIMM in a contiguous run of its lines).
    pub fn way_span(&self, way: u64, spa: u64, end: u64) -> (u64, u64) {
        (self.way_bytes_before(way, spa - self.base), self.way_bytes_before(way, end - self.base))
    }

    /// The system ranges holding `[dpa, dpa + len)` of way `way`, one per line it
    /// touches, in ascending order.
    pub fn spa_pieces(self, way: u64, dpa: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
        let end = dpa.saturating_add(len);
        let mut at = dpa;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let line_end = (at / self.line + 1) * self.line;
            let piece = (line_end.min(end)) - at;
            let spa = self.spa_of(way, at);
            at += piece;
            Some((spa, piece))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dimm(size: u64) -> DimmConfig {
        DimmConfig::with_defaults(0, "/nonexistent".into(), size)
    }

    #[test]
    fn parses_dimm_lists_and_line_sizes() {
        let set = InterleaveSetConfig::parse("dimms=0,1,2,3,line=2M").unwrap();
        assert_eq!(set, InterleaveSetConfig { dimms: vec![0, 1, 2, 3], line_size: 2 << 20 });
        let set = InterleaveSetConfig::parse("line=8K,dimms=2,3").unwrap();
        assert_eq!(set, InterleaveSetConfig { dimms: vec![2, 3], line_size: 8192 });
        assert_eq!(InterleaveSetConfig::parse("dimms=0,1").unwrap().line_size, DEFAULT_LINE);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let message = |s: &str| InterleaveSetConfig::parse(s).unwrap_err().to_string();
        assert!(message("line=4K").contains("missing `dimms=`"));
        assert!(message("dimms=0,x").contains("`x` is not a DIMM number"));
        assert!(message("dimms=0,1,ways=2").contains("unknown key `ways`"));
        assert!(message("line=4K,0").contains("`0` is not of the form key=value"));
        assert!(message("dimms=0,1,line=4Q").contains("line: `4Q`"));
        assert!(message("dimms=0,dimms=1").contains("given twice"));
    }

    #[test]
    fn validation_refuses_sets_linux_or_the_mapping_cannot_take() {
        let dimms = vec![dimm(64 << 20), dimm(64 << 20), dimm(64 << 20), dimm(32 << 20)];
        let check = |d: &[usize], line: u64| InterleaveSetConfig { dimms: d.to_vec(), line_size: line }.validate(0, &dimms);
        assert!(check(&[0, 1], 4096).is_ok());
        assert!(check(&[0, 1, 2], 4096).is_ok());
        assert!(check(&[1, 2], 4096).is_ok());
        let reason = |r: Result<(), InterleaveError>| r.unwrap_err().to_string();
        assert!(reason(check(&[0], 4096)).contains("1 DIMMs given"));
        assert!(reason(check(&[0, 1], 3000)).contains("power of two"));
        assert!(reason(check(&[0, 1], 2048)).contains("power of two"));
        assert!(reason(check(&[0, 4], 4096)).contains("no nvdimm #4"));
        assert!(reason(check(&[0, 0], 4096)).contains("named twice"));
        assert!(reason(check(&[2, 3], 4096)).contains("same size"));
        assert!(reason(check(&[0, 2], 4096)).contains("consecutive and ascending"));
        assert!(reason(check(&[1, 0], 4096)).contains("consecutive and ascending"));
        assert!(reason(check(&[0, 1], GIB)).contains("not a multiple of the line size"));
    }

    #[test]
    fn two_way_lines_alternate() {
        let g = Geometry { base: 1 << 32, ways: 2, line: 4096 };
        assert_eq!(g.spa_of(0, 0), 1 << 32);
        assert_eq!(g.spa_of(1, 0), (1 << 32) + 4096);
        assert_eq!(g.spa_of(0, 4096), (1 << 32) + 8192);
        assert_eq!(g.spa_of(1, 4097), (1 << 32) + 3 * 4096 + 1);
        assert_eq!(g.locate((1 << 32) + 3 * 4096 + 1), (1, 4097));
        let pieces: Vec<_> = g.spa_pieces(1, 4000, 200).collect();
        assert_eq!(pieces, vec![((1 << 32) + 4096 + 4000, 96), ((1 << 32) + 3 * 4096, 104)]);
    }

    fn geometry() -> impl Strategy<Value = (Geometry, u64)> {
        (2u64..=8, 12u32..=16, 1u64..=8).prop_map(|(ways, shift, lines)| {
            let line = 1u64 << shift;
            (Geometry { base: 4 << 30, ways, line }, lines * line)
        })
    }

    proptest! {
        /// Every (way, offset) has exactly one address and every address in the range
        /// exactly one (way, offset): the mapping is a bijection.
        #[test]
        fn mapping_is_a_bijection((g, size) in geometry(), way in 0u64..8, dpa in 0u64..(8 << 16)) {
            let (way, dpa) = (way % g.ways, dpa % size);
            let spa = g.spa_of(way, dpa);
            prop_assert!(spa >= g.base && spa < g.base + g.ways * size);
            prop_assert_eq!(g.locate(spa), (way, dpa));
        }

        /// A system range meets each way in the interval `way_span` names: every byte of
        /// the range is in its way's span and every span byte maps back into the range.
        #[test]
        fn way_spans_cover_exactly_the_range((g, size) in geometry(), a in 0u64..(1 << 20), b in 0u64..(1 << 20)) {
            let total = g.ways * size;
            let (start, end) = (a.min(b) % total, (a.max(b) % total).max(a.min(b) % total));
            let (start, end) = (g.base + start, g.base + end);
            let mut covered = 0;
            for way in 0..g.ways {
                let (lo, hi) = g.way_span(way, start, end);
                prop_assert!(lo <= hi);
                covered += hi - lo;
                if hi > lo {
                    for dpa in [lo, hi - 1] {
                        let spa = g.spa_of(way, dpa);
                        prop_assert!(spa >= start && spa < end, "way {} dpa {:#x} -> {:#x}", way, dpa, spa);
                    }
                }
            }
            prop_assert_eq!(covered, end - start);
        }

        /// Pieces cover the DIMM range byte for byte, each within one line, ascending.
        #[test]
        fn pieces_cover_the_dimm_range((g, size) in geometry(), way in 0u64..8, dpa in 0u64..(1 << 19), len in 1u64..(1 << 17)) {
            let (way, dpa) = (way % g.ways, dpa % size);
            let len = len.min(size - dpa);
            let pieces: Vec<_> = g.spa_pieces(way, dpa, len).collect();
            prop_assert_eq!(pieces.iter().map(|p| p.1).sum::<u64>(), len);
            let mut next = dpa;
            for (i, &(spa, piece)) in pieces.iter().enumerate() {
                prop_assert_eq!(g.locate(spa), (way, next));
                prop_assert_eq!(g.locate(spa + piece - 1), (way, next + piece - 1));
                if i > 0 { prop_assert!(spa > pieces[i - 1].0); }
                next += piece;
            }
        }
    }
}
