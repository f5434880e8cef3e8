//! Identity page tables for entering long mode directly: 2 MiB pages over chosen
//! GiB-aligned ranges (all of the low 4 GiB — RAM, the mailbox, the ACPI area, the
//! MMIO hole — and the start of each NVDIMM window).
//!
//! 2 MiB rather than 1 GiB pages because this host's KVM (instruction emulator
//! over shadow paging) triple-faults on 1 GiB pages. A 2 MiB mapping costs one
//! 4 KiB table per GiB, so a bare-metal guest gets the first `WINDOW_MAP_LIMIT` of
//! each window, not a 1 TiB window whole.

use thiserror::Error;

pub const PAGE: u64 = 4096;
const PRESENT_RW: u64 = 0b11;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
/// How much of each NVDIMM window bare-metal programs can reach.
pub const WINDOW_MAP_LIMIT: u64 = 4 * GIB;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PageTableError {
    #[error("identity map needs {need:#x} bytes of page tables; only {have:#x} are reserved for them")]
    TooLarge { need: u64, have: u64 },
    #[error("identity map range {start:#x}+{len:#x} is beyond 48-bit addresses")]
    OutOfRange { start: u64, len: u64 },
}

/// Page tables for placement at `base` (PML4 first, then PDPTs and PDs as they are
/// needed), at most `room` bytes, mapping every GiB touched by `ranges` (start, len).
/// Returns the bytes to copy to `base`; CR3 = `base`.
pub fn identity_map(base: u64, ranges: &[(u64, u64)], room: u64) -> Result<Vec<u8>, PageTableError> {
    let mut gibs: Vec<u64> = Vec::new();
    for &(start, len) in ranges {
        let end = start.checked_add(len).filter(|&e| e <= 1 << 48).ok_or(PageTableError::OutOfRange { start, len })?;
        gibs.extend((start / GIB)..end.div_ceil(GIB));
    }
    gibs.sort_unstable();
    gibs.dedup();
    let mut pdpts: Vec<u64> = gibs.iter().map(|g| g / 512).collect();
    pdpts.dedup();
    let need = (1 + pdpts.len() as u64 + gibs.len() as u64) * PAGE;
    if need > room {
        return Err(PageTableError::TooLarge { need, have: room });
    }
    let mut bytes = vec![0u8; need as usize];
    let mut put = |at: u64, value: u64| {
        bytes[at as usize..at as usize + 8].copy_from_slice(&value.to_le_bytes());
    };
    for (i, &p) in pdpts.iter().enumerate() {
        put(p * 8, (base + (1 + i as u64) * PAGE) | PRESENT_RW);
    }
    let pd_start = 1 + pdpts.len() as u64;
    for (i, &g) in gibs.iter().enumerate() {
        let pdpt_index = pdpts.iter().position(|&p| p == g / 512).unwrap_or(0) as u64;
        let pd = pd_start + i as u64;
        put((1 + pdpt_index) * PAGE + (g % 512) * 8, (base + pd * PAGE) | PRESENT_RW);
        for e in 0..512u64 {
            put(pd * PAGE + e * 8, (g * GIB + e * MIB2) | PRESENT_RW | PAGE_SIZE_BIT);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables like the MMU does; None where nothing is mapped.
    fn translate(tables: &[u8], base: u64, va: u64) -> Option<u64> {
        let entry = |table: u64, index: u64| -> Option<u64> {
            let at = (table.checked_sub(base)? + index * 8) as usize;
            let e = u64::from_le_bytes(tables.get(at..at + 8)?.try_into().ok()?);
            (e & 1 == 1).then_some(e)
        };
        let pml4e = entry(base, (va >> 39) & 511)?;
        let pdpte = entry(pml4e & !0xfff, (va >> 30) & 511)?;
        assert_eq!(pdpte & PAGE_SIZE_BIT, 0, "no 1 GiB pages");
        let pde = entry(pdpte & !0xfff, (va >> 21) & 511)?;
        assert_ne!(pde & PAGE_SIZE_BIT, 0, "2 MiB pages only");
        Some((pde & !(MIB2 - 1) & ((1 << 52) - 1)) | (va & (MIB2 - 1)))
    }

    #[test]
    fn maps_low_memory_and_window_starts() {
        let base = 0x1000;
        let tib = 1u64 << 40;
        let windows: Vec<(u64, u64)> = (0..4).map(|i| (4 * GIB + i * tib, WINDOW_MAP_LIMIT)).collect();
        let mut ranges = vec![(0, 4 * GIB)];
        ranges.extend(&windows);
        let tables = identity_map(base, &ranges, 0x7f000).unwrap();
        for va in [0, 0xfff, 0xd0000, 0xe0000, 0xc000_0000, 0xc010_0000, 0xfee0_0000, 4 * GIB, 4 * GIB + 0x3008] {
            assert_eq!(translate(&tables, base, va), Some(va), "{va:#x}");
        }
        for (start, len) in windows {
            assert_eq!(translate(&tables, base, start + len - 8), Some(start + len - 8));
            assert_eq!(translate(&tables, base, start + len), None);
        }
        assert_eq!(translate(&tables, base, 1 << 46), None);
    }

    #[test]
    fn refuses_when_tables_do_not_fit() {
        let err = identity_map(0x1000, &[(0, 1 << 40)], 0x10000).unwrap_err();
        assert!(matches!(err, PageTableError::TooLarge { .. }), "{err}");
        let err = identity_map(0x1000, &[(u64::MAX - 5, 10)], 0x10000).unwrap_err();
        assert!(matches!(err, PageTableError::OutOfRange { .. }), "{err}");
        // PML4 + 1 PDPT + 4 PDs.
        assert_eq!(identity_map(0x1000, &[(0, 4 * GIB)], 0x6000).unwrap().len(), 0x6000);
    }
}
