//! Identity page tables for entering long mode directly: one PML4 and as many
//! PDPTs as needed, mapping every 1 GiB of guest physical space up to `end` with
//! 1 GiB pages, so low RAM, the MMIO hole and every NVDIMM window are reachable.

use thiserror::Error;

pub const PAGE: u64 = 4096;
const PRESENT_RW: u64 = 0b11;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const GIB: u64 = 1 << 30;
/// One PDPT maps 512 GiB.
const PDPT_SPAN: u64 = 512 * GIB;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PageTableError {
    #[error("identity map up to {end:#x} needs {need:#x} bytes of page tables; only {have:#x} are reserved for them")]
    TooLarge { end: u64, need: u64, have: u64 },
}

/// Page tables for placement at `base` (PML4 first, then the PDPTs), at most
/// `room` bytes. Returns the bytes to copy to `base`; CR3 = `base`.
pub fn identity_map(base: u64, end: u64, room: u64) -> Result<Vec<u8>, PageTableError> {
    let pdpts = end.div_ceil(PDPT_SPAN).max(1);
    let need = (1 + pdpts) * PAGE;
    if need > room || pdpts > 512 {
        return Err(PageTableError::TooLarge {
            end,
            need,
            have: room,
        });
    }
    let mut bytes = vec![0u8; need as usize];
    let mut put = |at: u64, value: u64| {
        bytes[at as usize..at as usize + 8].copy_from_slice(&value.to_le_bytes());
    };
    for p in 0..pdpts {
        let pdpt = base + (1 + p) * PAGE;
        put(p * 8, pdpt | PRESENT_RW);
        for e in 0..512u64 {
            let gpa = p * PDPT_SPAN + e * GIB;
            put((1 + p) * PAGE + e * 8, gpa | PRESENT_RW | PAGE_SIZE_BIT);
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
            let at = (table - base + index * 8) as usize;
            let e = u64::from_le_bytes(tables.get(at..at + 8)?.try_into().ok()?);
            (e & 1 == 1).then_some(e)
        };
        let pml4e = entry(base, (va >> 39) & 511)?;
        let pdpte = entry(pml4e & !0xfff, (va >> 30) & 511)?;
        assert_ne!(pdpte & PAGE_SIZE_BIT, 0, "only 1 GiB pages are built");
        Some((pdpte & !(GIB - 1) & ((1 << 52) - 1)) | (va & (GIB - 1)))
    }

    #[test]
    fn maps_identity_up_to_end() {
        let base = 0x1000;
        let end = 4 * (1u64 << 40) + 5 * GIB; // four 1 TiB windows above 4 GiB
        let tables = identity_map(base, end, 0x80000).unwrap();
        for va in [
            0,
            0xfff,
            0xd0000,
            0xc000_0000,
            0xc010_0000,
            4 * GIB,
            1 << 40,
            end - 1,
            0x1234_5678_9ab,
        ] {
            assert_eq!(translate(&tables, base, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(&tables, base, 1 << 46), None);
    }

    #[test]
    fn refuses_when_tables_do_not_fit() {
        let err = identity_map(0x1000, 1 << 46, 0x10000).unwrap_err();
        assert!(matches!(err, PageTableError::TooLarge { .. }), "{err}");
        assert_eq!(identity_map(0x1000, 4 * GIB, 0x2000).unwrap().len(), 0x2000);
    }
}
