//! Namespace label storage area math (UEFI namespace labels v1.1 / v1.2), mirroring
//! Linux's drivers/nvdimm/label.c and ndctl's ndctl/lib/dimm.c so that what we build
//! or accept is exactly what the guest builds or accepts.
//!
//! Area layout: index block 0, index block 1, then `nslot` label slots. The device
//! model never interprets labels to answer `_DSM` calls (the area is opaque bytes to
//! the guest's firmware interface); this module exists to pre-format areas like
//! `ndctl init-labels` and to report whether an area holds a valid index.

use thiserror::Error;

pub const INDEX_SIGNATURE: &[u8; 16] = b"NAMESPACE_INDEX\0";
/// Index blocks are a multiple of this (Linux NSINDEX_ALIGN).
pub const INDEX_ALIGN: u64 = 256;
/// Bytes of an index block before its free bitmap (`struct nd_namespace_index`).
pub const INDEX_HEADER_SIZE: u64 = 72;
/// Linux's ND_LABEL_MIN_SIZE.
pub const MIN_AREA_SIZE: u64 = 1024;

// Index block field offsets.
const SIG: usize = 0;
const LABEL_SIZE: usize = 19;
const SEQ: usize = 20;
const MY_OFF: usize = 24;
const MY_SIZE: usize = 32;
const OTHER_OFF: usize = 40;
const LABEL_OFF: usize = 48;
const NSLOT: usize = 56;
const MAJOR: usize = 60;
const MINOR: usize = 62;
const CHECKSUM: usize = 64;
const FREE: usize = 72;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("a {area}-byte label area cannot hold two index blocks and two {label_size}-byte labels")]
    AreaTooSmall { area: u64, label_size: u64 },
    #[error("no valid namespace index: {}", .0.join("; "))]
    NoValidIndex(Vec<String>),
}

/// Label format version; it fixes the label slot size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelVersion {
    /// 128-byte labels; what `ndctl init-labels` writes by default.
    V1_1,
    /// 256-byte labels with checksums and type GUIDs.
    V1_2,
}

impl LabelVersion {
    pub fn label_size(self) -> u64 {
        match self {
            Self::V1_1 => 128,
            Self::V1_2 => 256,
        }
    }

    pub fn minor(self) -> u16 {
        match self {
            Self::V1_1 => 1,
            Self::V1_2 => 2,
        }
    }
}

/// Linux `nd_fletcher64` over little-endian u32 words (a trailing partial word is ignored).
pub fn fletcher64(data: &[u8]) -> u64 {
    let mut lo: u32 = 0;
    let mut hi: u32 = 0;
    for word in data.chunks_exact(4) {
        lo = lo.wrapping_add(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        hi = hi.wrapping_add(lo);
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Size of one index block describing `nslot` slots: header plus one free bit per slot,
/// rounded up to 256 bytes.
pub fn index_size_for_slots(nslot: u64) -> u64 {
    (INDEX_HEADER_SIZE + nslot.div_ceil(8)).next_multiple_of(INDEX_ALIGN)
}

/// Number of label slots Linux and ndctl lay out in an area of `area` bytes
/// (`nvdimm_num_label_slots`): size the index for as many slots as would fit
/// without any index, then count the slots that fit after two such indexes.
pub fn num_label_slots(area: u64, version: LabelVersion) -> u64 {
    let label = version.label_size();
    let index = index_size_for_slots(area / label);
    area.saturating_sub(2 * index) / label
}

/// Size of one index block for this area (`sizeof_namespace_index`), or an error
/// when the area cannot hold two indexes and at least two labels.
pub fn index_block_size(area: u64, version: LabelVersion) -> Result<u64, LabelError> {
    let nslot = num_label_slots(area, version);
    let space = area.saturating_sub(nslot * version.label_size());
    let size = index_size_for_slots(nslot);
    if 2 * size <= space && nslot >= 2 {
        Ok(size)
    } else {
        Err(LabelError::AreaTooSmall { area, label_size: version.label_size() })
    }
}

/// Writes the two index blocks `ndctl init-labels` writes into `area`: block 0 with
/// sequence 3 and block 1 with sequence 2 (so block 0 is current), every free bit set
/// for `ALIGN(nslot, 64)` slots (ndctl does not clear the bits past `nslot`), the rest
/// of each block zero. Label slots are left untouched.
pub fn write_fresh_index(area: &mut [u8], version: LabelVersion) -> Result<(), LabelError> {
    let area_size = area.len() as u64;
    let index_size = index_block_size(area_size, version)?;
    let nslot = num_label_slots(area_size, version);
    let free_bytes = (nslot.next_multiple_of(64) / 8) as usize;
    for (i, seq) in [(0u64, 3u32), (1, 2)] {
        let block = &mut area[(i * index_size) as usize..((i + 1) * index_size) as usize];
        block.fill(0);
        block[SIG..SIG + 16].copy_from_slice(INDEX_SIGNATURE);
        block[LABEL_SIZE] = (version.label_size() >> 8) as u8;
        put(block, SEQ, &seq.to_le_bytes());
        put(block, MY_OFF, &(i * index_size).to_le_bytes());
        put(block, MY_SIZE, &index_size.to_le_bytes());
        put(block, OTHER_OFF, &((1 - i) * index_size).to_le_bytes());
        put(block, LABEL_OFF, &(2 * index_size).to_le_bytes());
        put(block, NSLOT, &(nslot as u32).to_le_bytes());
        put(block, MAJOR, &1u16.to_le_bytes());
        put(block, MINOR, &version.minor().to_le_bytes());
        let end = (FREE + free_bytes).min(block.len());
        block[FREE..end].fill(0xff);
        let sum = fletcher64(block);
        put(block, CHECKSUM, &sum.to_le_bytes());
    }
    Ok(())
}

/// A freshly initialised area of `area_size` bytes (index blocks as `ndctl
/// init-labels` writes them, zeroed slots).
pub fn fresh_area(area_size: u64, version: LabelVersion) -> Result<Vec<u8>, LabelError> {
    let mut area = vec![0; usize::try_from(area_size).unwrap_or(usize::MAX)];
    write_fresh_index(&mut area, version)?;
    Ok(area)
}

/// What the validator found: the index Linux would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    pub version: LabelVersion,
    pub index_size: u64,
    /// Which block is current (0 or 1).
    pub current: usize,
    pub seq: u32,
    pub nslot: u32,
    /// Slots marked free in the current block's bitmap.
    pub free_slots: u32,
}

/// Parses an area the way Linux's `nd_label_validate` does (128-byte labels first,
/// then 256) and returns the current index, or why neither block is valid.
pub fn validate(area: &[u8]) -> Result<IndexInfo, LabelError> {
    let mut reasons = Vec::new();
    for version in [LabelVersion::V1_1, LabelVersion::V1_2] {
        match validate_as(area, version) {
            Ok(info) => return Ok(info),
            Err(mut why) => reasons.append(&mut why),
        }
    }
    Err(LabelError::NoValidIndex(reasons))
}

fn validate_as(area: &[u8], version: LabelVersion) -> Result<IndexInfo, Vec<String>> {
    let label_size = version.label_size();
    let area_size = area.len() as u64;
    let index_size = index_block_size(area_size, version).map_err(|e| vec![e.to_string()])?;
    let mut valid = [None, None];
    let mut reasons = Vec::new();
    for (i, slot) in valid.iter_mut().enumerate() {
        let block = &area[i * index_size as usize..(i + 1) * index_size as usize];
        match check_block(block, i as u64, index_size, label_size, area_size) {
            Ok(seq) => *slot = Some(seq),
            Err(why) => reasons.push(format!("{label_size}-byte labels, index block {i}: {why}")),
        }
    }
    let current = match valid {
        [None, None] => return Err(reasons),
        [Some(_), None] => 0,
        [None, Some(_)] => 1,
        [Some(a), Some(b)] => {
            if best_seq(a, b) == b & 3 {
                1
            } else {
                0
            }
        }
    };
    let block = &area[current * index_size as usize..(current + 1) * index_size as usize];
    let nslot = u32::from_le_bytes(get::<4>(block, NSLOT));
    let free_slots = (0..nslot as usize)
        .filter(|&s| block.get(FREE + s / 8).is_some_and(|b| b & (1 << (s % 8)) != 0))
        .count() as u32;
    Ok(IndexInfo { version, index_size, current, seq: u32::from_le_bytes(get::<4>(block, SEQ)), nslot, free_slots })
}

/// One block's checks, in Linux's order; returns its sequence number.
fn check_block(block: &[u8], i: u64, index_size: u64, label_size: u64, area: u64) -> Result<u32, String> {
    if &block[SIG..SIG + 16] != INDEX_SIGNATURE {
        return Err("signature is not NAMESPACE_INDEX".into());
    }
    let major = u16::from_le_bytes(get::<2>(block, MAJOR));
    let minor = u16::from_le_bytes(get::<2>(block, MINOR));
    let declared = if u32::from(major) * 100 + u32::from(minor) >= 102 {
        1u64.checked_shl(7 + u32::from(block[LABEL_SIZE])).unwrap_or(0)
    } else {
        128
    };
    if declared != label_size {
        return Err(format!("declares {declared}-byte labels"));
    }
    let stored = u64::from_le_bytes(get::<8>(block, CHECKSUM));
    let mut copy = block.to_vec();
    copy[CHECKSUM..CHECKSUM + 8].fill(0);
    let sum = fletcher64(&copy);
    if sum != stored {
        return Err(format!("checksum {stored:#x} does not match {sum:#x}"));
    }
    let seq = u32::from_le_bytes(get::<4>(block, SEQ));
    if seq & 3 == 0 {
        return Err(format!("sequence {seq:#x} is invalid"));
    }
    let field = |at| u64::from_le_bytes(get::<8>(block, at));
    if field(MY_OFF) != i * index_size {
        return Err(format!("my offset {:#x} should be {:#x}", field(MY_OFF), i * index_size));
    }
    if field(OTHER_OFF) != (1 - i) * index_size {
        return Err(format!("other offset {:#x} should be {:#x}", field(OTHER_OFF), (1 - i) * index_size));
    }
    if field(LABEL_OFF) != 2 * index_size {
        return Err(format!("label offset {:#x} should be {:#x}", field(LABEL_OFF), 2 * index_size));
    }
    let my_size = field(MY_SIZE);
    if my_size > index_size || my_size < INDEX_HEADER_SIZE {
        return Err(format!("my size {my_size:#x} is outside {INDEX_HEADER_SIZE}..={index_size}"));
    }
    let nslot = u64::from(u32::from_le_bytes(get::<4>(block, NSLOT)));
    if nslot * label_size + 2 * index_size > area {
        return Err(format!("{nslot} slots do not fit in {area} bytes"));
    }
    Ok(seq)
}

/// Linux `best_seq`: of two valid sequence numbers, the newer in the 1->2->3->1 cycle.
fn best_seq(a: u32, b: u32) -> u32 {
    let (a, b) = (a & 3, b & 3);
    let next = |s: u32| [0, 2, 3, 1][s as usize];
    if a == 0 || a == b {
        b
    } else if b == 0 {
        a
    } else if next(a) == b {
        b
    } else {
        a
    }
}

fn put(block: &mut [u8], at: usize, bytes: &[u8]) {
    block[at..at + bytes.len()].copy_from_slice(bytes);
}

fn get<const N: usize>(block: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&block[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use LabelVersion::*;

    #[test]
    fn slot_counts_match_linux() {
        // Worked by hand from nvdimm_num_label_slots / sizeof_namespace_index.
        let cases = [
            (1024, V1_1, 4, 256),
            (1024, V1_2, 2, 256),
            (128 << 10, V1_1, 1020, 256),
            (128 << 10, V1_2, 510, 256),
            (1 << 20, V1_1, 8172, 1280),
            (1 << 20, V1_2, 4090, 768),
        ];
        for (area, version, nslot, index) in cases {
            assert_eq!(num_label_slots(area, version), nslot, "{area} {version:?}");
            assert_eq!(index_block_size(area, version), Ok(index), "{area} {version:?}");
            assert!(2 * index + nslot * version.label_size() <= area);
        }
        assert_eq!(index_block_size(768, V1_1), Ok(256), "two 128-byte slots fit");
        assert!(index_block_size(640, V1_1).is_err());
        assert!(index_block_size(768, V1_2).is_err());
    }

    #[test]
    fn fletcher_matches_hand_computation() {
        // words 1, 2, 3: lo = 6, hi = 1 + 3 + 6 = 10
        let data = [1u32, 2, 3].iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<_>>();
        assert_eq!(fletcher64(&data), (10 << 32) | 6);
        // lo wraps to 0xfffffffe; hi = 0xffffffff + 0xfffffffe, keeping the low 32 bits.
        assert_eq!(fletcher64(&[0xff; 8]), (0xfffffffd_u64 << 32) | 0xfffffffe);
    }

    #[test]
    fn fresh_index_layout_is_what_ndctl_writes() {
        let area = fresh_area(128 << 10, V1_1).unwrap();
        for (i, seq) in [(0usize, 3u32), (1, 2)] {
            let b = &area[i * 256..(i + 1) * 256];
            assert_eq!(&b[..16], INDEX_SIGNATURE);
            assert_eq!(b[19], 0);
            assert_eq!(u32::from_le_bytes(get::<4>(b, SEQ)), seq);
            assert_eq!(u64::from_le_bytes(get::<8>(b, MY_OFF)), (i * 256) as u64);
            assert_eq!(u64::from_le_bytes(get::<8>(b, OTHER_OFF)), ((1 - i) * 256) as u64);
            assert_eq!(u64::from_le_bytes(get::<8>(b, LABEL_OFF)), 512);
            assert_eq!(u32::from_le_bytes(get::<4>(b, NSLOT)), 1020);
            assert_eq!(u16::from_le_bytes(get::<2>(b, MINOR)), 1);
            // ALIGN(1020, 64) / 8 = 128 bytes of free bits, then zeros.
            assert!(b[72..200].iter().all(|&x| x == 0xff));
            assert!(b[200..].iter().all(|&x| x == 0));
        }
        assert!(area[512..].iter().all(|&x| x == 0));
    }

    #[test]
    fn validator_accepts_builder_output_and_rejects_a_flipped_byte() {
        for area_size in [1024u64, 128 << 10, 1 << 20] {
            for version in [V1_1, V1_2] {
                let area = fresh_area(area_size, version).unwrap();
                let info = validate(&area).unwrap();
                let nslot = num_label_slots(area_size, version) as u32;
                assert_eq!(info.version, version);
                assert_eq!(info.current, 0, "seq 3 beats seq 2");
                assert_eq!(info.seq, 3);
                assert_eq!(info.nslot, nslot);
                assert_eq!(info.free_slots, nslot);

                // Corrupting block 0 leaves block 1 current; corrupting both fails.
                let mut bad = area.clone();
                bad[100] ^= 0x01;
                assert_eq!(validate(&bad).unwrap().current, 1);
                let index = info.index_size as usize;
                bad[index + 30] ^= 0x80;
                let err = validate(&bad).unwrap_err();
                assert!(err.to_string().contains("checksum"), "{err}");
            }
        }
        assert!(validate(&vec![0; 128 << 10]).is_err());
    }

    #[test]
    fn best_seq_follows_the_cycle() {
        assert_eq!(best_seq(3, 2), 3);
        assert_eq!(best_seq(1, 3), 1);
        assert_eq!(best_seq(1, 2), 2);
        assert_eq!(best_seq(0, 2), 2);
    }

    #[test]
    fn garbage_areas_do_not_panic() {
        for len in [0usize, 1, 255, 1024, 4096] {
            let mut area = vec![0xffu8; len];
            let _ = validate(&area);
            if len >= 16 {
                area[..16].copy_from_slice(INDEX_SIGNATURE);
            }
            let _ = validate(&area);
        }
    }
}
