//! Guest physical memory map of the x86_64 KVM machine.
//!
//! Fixed addresses for everything firmware-like, so the ACPI tables (and the
//! golden files made from them) depend only on the configuration:
//!
//! | range | what |
//! |---|---|
//! | `0x0000_0000..0x000A_0000` | RAM |
//! | `0x000A_0000..0x000D_0000` | legacy VGA / option ROM hole (reserved) |
//! | `0x000D_0000..0x000D_3000` | `_DSM` mailbox (RAM, reserved) |
//! | `0x000D_3000..0x000E_0000` | legacy hole (reserved) |
//! | `0x000E_0000..0x0010_0000` | ACPI tables, RSDP first (RAM, reserved) |
//! | `0x0010_0000..min(memory, 3 GiB)` | RAM |
//! | `0xC000_0000` | `_DSM` doorbell page (MMIO) |
//! | `0xC000_1000` | Generic Event Device register page (MMIO) |
//! | `0xC010_0000..` | flush hint pages, one 4 KiB MMIO page each |
//! | `0xFEC0_0000` / `0xFEE0_0000` | IO APIC / local APIC |
//! | `4 GiB..` | RAM beyond 3 GiB |
//! | next 1 GiB boundary.. | NVDIMM windows, each 1 GiB aligned |
//!
//! See docs/memory-map.md for why each piece sits where it does.

use nvdimm_model::config::{GIB, MAX_DIMMS, MAX_FLUSH_HINTS};
use nvdimm_model::layout::{LayoutError, PAGE_SIZE};
use nvdimm_model::mailbox::MAILBOX_SIZE;
use nvdimm_model::{PlatformConfig, PlatformLayout};
use thiserror::Error;

use crate::config::{MachineConfig, MachineConfigError};

/// Start of the VGA / option ROM / BIOS hole below 1 MiB.
pub const LEGACY_HOLE_START: u64 = 0x000A_0000;
/// The `_DSM` mailbox: RAM the guest's AML reads and writes, hidden from the OS allocator.
pub const MAILBOX_ADDR: u64 = 0x000D_0000;
/// Linux scans 0xE0000..0x100000 for "RSD PTR " when no boot parameter names it.
pub const RSDP_ADDR: u64 = 0x000E_0000;
/// The ACPI tables live right behind the RSDP, up to 1 MiB.
pub const ACPI_AREA_START: u64 = RSDP_ADDR;
pub const ACPI_AREA_END: u64 = 0x0010_0000;
pub const ACPI_AREA_SIZE: u64 = ACPI_AREA_END - ACPI_AREA_START;
/// Start of the 32-bit MMIO hole; RAM above 3 GiB moves to 4 GiB.
pub const MMIO_HOLE_START: u64 = 3 * GIB;
pub const MMIO_HOLE_END: u64 = 4 * GIB;
/// The doorbell traps (no memslot), so the VMM serves a `_DSM` call during the exit.
pub const DOORBELL_ADDR: u64 = MMIO_HOLE_START;
/// The Generic Event Device's pending-event register (traps like the doorbell).
pub const GED_MMIO_ADDR: u64 = DOORBELL_ADDR + PAGE_SIZE;
/// Flush hint pages, packed from here. Room for every DIMM's maximum number of hints.
pub const FLUSH_HINT_AREA_START: u64 = MMIO_HOLE_START + 0x10_0000;
pub const FLUSH_HINT_AREA_SIZE: u64 = MAX_DIMMS as u64 * MAX_FLUSH_HINTS as u64 * PAGE_SIZE;
pub const IOAPIC_ADDR: u64 = 0xFEC0_0000;
pub const LAPIC_ADDR: u64 = 0xFEE0_0000;
pub const HIGH_RAM_START: u64 = MMIO_HOLE_END;
/// devdax namespaces with 1 GiB alignment need 1 GiB aligned windows.
pub const NVDIMM_WINDOW_ALIGN: u64 = GIB;
/// Nothing may end above this: 46 bits is the smallest guest physical width of current KVM hosts.
pub const MAX_GUEST_PHYS: u64 = 1 << 46;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemoryMapError {
    #[error(transparent)]
    Config(#[from] MachineConfigError),
    #[error("nvdimm layout: {0}")]
    Layout(#[from] LayoutError),
    #[error(
        "the NVDIMM windows end at {end:#x}, beyond the {max:#x} guest physical limit; use fewer or smaller --nvdimm"
    )]
    AddressSpace { end: u64, max: u64 },
    #[error(
        "{count} flush hints need {need:#x} bytes of MMIO but the flush hint area holds {have:#x}; lower flush-hints="
    )]
    TooManyFlushHints { count: usize, need: u64, have: u64 },
    #[error("memory map bug: {a} [{a_start:#x}, {a_end:#x}) overlaps {b} [{b_start:#x}, {b_end:#x})")]
    Overlap { a: String, a_start: u64, a_end: u64, b: String, b_start: u64, b_end: u64 },
}

/// What a range of guest physical addresses is, and so how the VMM backs it and
/// what the e820 map (vmm's e820.rs) says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Guest RAM the OS may use (e820 type 1).
    Ram,
    /// Guest RAM or an unused hole the OS must not use (e820 type 2).
    Reserved,
    /// Guest RAM holding the RSDP and the ACPI tables (reported reserved so nothing reuses it).
    Acpi,
    /// No memslot: every access exits to the VMM. Not listed in e820.
    Mmio,
    /// An NVDIMM window backed by the DIMM's file. Not listed in e820: the NFIT describes it.
    Pmem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub start: u64,
    pub size: u64,
    pub kind: RegionKind,
}

impl Region {
    fn new(name: impl Into<String>, start: u64, size: u64, kind: RegionKind) -> Self {
        Region { name: name.into(), start, size, kind }
    }

    pub fn end(&self) -> u64 {
        self.start + self.size
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end()).contains(&addr)
    }
}

/// The whole guest physical map for one machine + NVDIMM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMap {
    /// Every range anything lives in, sorted by start, non-overlapping.
    pub regions: Vec<Region>,
    /// Guest RAM as the VMM backs it (memslots): low RAM from 0, then RAM from 4 GiB.
    /// The reserved pieces of `regions` are inside these blocks.
    pub ram_blocks: Vec<(u64, u64)>,
    /// Where the device model's pieces are (NFIT SPA ranges, hints, mailbox, doorbell).
    pub layout: PlatformLayout,
}

impl MemoryMap {
    pub fn new(machine: &MachineConfig, platform: &PlatformConfig) -> Result<Self, MemoryMapError> {
        machine.validate()?;
        let low_size = machine.memory.min(MMIO_HOLE_START);
        let high_size = machine.memory - low_size;

        let mut ram_blocks = vec![(0, low_size)];
        let mut regions = vec![
            Region::new("RAM below the legacy hole", 0, LEGACY_HOLE_START, RegionKind::Ram),
            Region::new(
                "legacy VGA/ROM hole",
                LEGACY_HOLE_START,
                MAILBOX_ADDR - LEGACY_HOLE_START,
                RegionKind::Reserved,
            ),
            Region::new("DSM mailbox", MAILBOX_ADDR, MAILBOX_SIZE, RegionKind::Reserved),
            Region::new(
                "legacy ROM hole",
                MAILBOX_ADDR + MAILBOX_SIZE,
                ACPI_AREA_START - (MAILBOX_ADDR + MAILBOX_SIZE),
                RegionKind::Reserved,
            ),
            Region::new("ACPI tables (RSDP first)", ACPI_AREA_START, ACPI_AREA_SIZE, RegionKind::Acpi),
            Region::new("RAM", ACPI_AREA_END, low_size - ACPI_AREA_END, RegionKind::Ram),
            Region::new("DSM doorbell", DOORBELL_ADDR, PAGE_SIZE, RegionKind::Mmio),
            Region::new("Generic Event Device", GED_MMIO_ADDR, PAGE_SIZE, RegionKind::Mmio),
            Region::new("IO APIC", IOAPIC_ADDR, PAGE_SIZE, RegionKind::Mmio),
            Region::new("local APIC", LAPIC_ADDR, PAGE_SIZE, RegionKind::Mmio),
        ];
        if high_size > 0 {
            ram_blocks.push((HIGH_RAM_START, high_size));
            regions.push(Region::new("RAM above 4 GiB", HIGH_RAM_START, high_size, RegionKind::Ram));
        }

        let hint_count: usize = platform.dimms.iter().map(|d| usize::from(d.flush_hints)).sum();
        let hint_bytes = hint_count as u64 * PAGE_SIZE;
        if hint_bytes > FLUSH_HINT_AREA_SIZE {
            return Err(MemoryMapError::TooManyFlushHints {
                count: hint_count,
                need: hint_bytes,
                have: FLUSH_HINT_AREA_SIZE,
            });
        }
        if hint_bytes > 0 {
            regions.push(Region::new("NVDIMM flush hints", FLUSH_HINT_AREA_START, hint_bytes, RegionKind::Mmio));
        }

        let windows_start = (HIGH_RAM_START + high_size).next_multiple_of(NVDIMM_WINDOW_ALIGN);
        let layout = PlatformLayout::packed(
            platform,
            windows_start,
            NVDIMM_WINDOW_ALIGN,
            FLUSH_HINT_AREA_START,
            MAILBOX_ADDR,
            DOORBELL_ADDR,
        );
        for (index, (place, dimm)) in layout.dimms.iter().zip(&platform.dimms).enumerate() {
            let end = place.spa_base.checked_add(dimm.size).filter(|&end| end <= MAX_GUEST_PHYS);
            let Some(_) = end else {
                return Err(MemoryMapError::AddressSpace {
                    end: place.spa_base.saturating_add(dimm.size),
                    max: MAX_GUEST_PHYS,
                });
            };
            regions.push(Region::new(format!("nvdimm #{index} window"), place.spa_base, dimm.size, RegionKind::Pmem));
        }
        layout.validate(platform)?;

        regions.sort_by_key(|r| r.start);
        check_disjoint(&regions)?;
        Ok(MemoryMap { regions, ram_blocks, layout })
    }

    /// The region containing `addr`, if any.
    pub fn region_at(&self, addr: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(addr))
    }
}

fn check_disjoint(sorted: &[Region]) -> Result<(), MemoryMapError> {
    for pair in sorted.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.start < a.end() {
            return Err(MemoryMapError::Overlap {
                a: a.name.clone(),
                a_start: a.start,
                a_end: a.end(),
                b: b.name.clone(),
                b_start: b.start,
                b_end: b.end(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use nvdimm_model::config::{DimmConfig, MIB};
    use nvdimm_model::PersistenceDomain;

    use super::*;

    fn default_map(memory: u64) -> (MemoryMap, PlatformConfig) {
        let platform = PlatformConfig::default_in(Path::new("."));
        let map = MemoryMap::new(&MachineConfig { memory, cpus: 1 }, &platform).expect("valid map");
        (map, platform)
    }

    fn many_dimms(count: usize, hints: u16, size: u64) -> PlatformConfig {
        let dimms = (0..count)
            .map(|i| {
                let mut d = DimmConfig::with_defaults(i, PathBuf::from(format!("d{i}")), size);
                d.flush_hints = hints;
                d
            })
            .collect();
        PlatformConfig::new(dimms, PersistenceDomain::CpuCache).expect("valid platform")
    }

    fn in_hole(start: u64, size: u64) -> bool {
        start >= MMIO_HOLE_START && start + size <= MMIO_HOLE_END
    }

    fn assert_sane(map: &MemoryMap, platform: &PlatformConfig, memory: u64) {
        for pair in map.regions.windows(2) {
            assert!(pair[0].end() <= pair[1].start, "{:?} overlaps {:?}", pair[0], pair[1]);
        }
        for r in &map.regions {
            assert_eq!(r.start % PAGE_SIZE, 0, "{r:?}");
            assert_eq!(r.size % PAGE_SIZE, 0, "{r:?}");
            assert!(r.size > 0, "{r:?}");
        }
        let ram: u64 = map.ram_blocks.iter().map(|b| b.1).sum();
        assert_eq!(ram, memory);
        // Everything RAM-like lies inside a RAM block, everything MMIO/Pmem outside all of them.
        for r in &map.regions {
            let inside = map.ram_blocks.iter().any(|&(s, n)| r.start >= s && r.end() <= s + n);
            let outside = map.ram_blocks.iter().all(|&(s, n)| r.end() <= s || r.start >= s + n);
            match r.kind {
                RegionKind::Ram | RegionKind::Reserved | RegionKind::Acpi => assert!(inside, "{r:?}"),
                RegionKind::Mmio | RegionKind::Pmem => assert!(outside, "{r:?}"),
            }
        }
        let ram_end = map.ram_blocks.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        for (place, dimm) in map.layout.dimms.iter().zip(&platform.dimms) {
            assert_eq!(place.spa_base % GIB, 0, "window {:#x} not 1 GiB aligned", place.spa_base);
            assert!(place.spa_base >= ram_end.max(MMIO_HOLE_END));
            assert_eq!(place.flush_hints.len(), usize::from(dimm.flush_hints));
            for &hint in &place.flush_hints {
                assert!(in_hole(hint, PAGE_SIZE), "hint {hint:#x} outside the MMIO hole");
                assert_eq!(hint % PAGE_SIZE, 0);
                assert_eq!(map.region_at(hint).map(|r| r.kind), Some(RegionKind::Mmio));
            }
        }
        assert!(in_hole(map.layout.doorbell, PAGE_SIZE));
        assert_eq!(
            map.region_at(GED_MMIO_ADDR).map(|r| (r.name.as_str(), r.kind)),
            Some(("Generic Event Device", RegionKind::Mmio))
        );
        assert_eq!(map.region_at(map.layout.doorbell).map(|r| r.name.as_str()), Some("DSM doorbell"));
        let mailbox = map.region_at(map.layout.mailbox).expect("mailbox mapped");
        assert_eq!((mailbox.kind, mailbox.size), (RegionKind::Reserved, MAILBOX_SIZE));
        assert_eq!(map.region_at(RSDP_ADDR).map(|r| r.kind), Some(RegionKind::Acpi));
    }

    #[test]
    fn default_machine() {
        let (map, platform) = default_map(512 * MIB);
        assert_sane(&map, &platform, 512 * MIB);
        assert_eq!(map.ram_blocks, vec![(0, 512 * MIB)]);
        assert_eq!(map.layout.dimms[0].spa_base, 4 * GIB);
        assert_eq!(map.layout.dimms[1].spa_base, 5 * GIB);
        assert_eq!(map.layout.dimms[0].flush_hints, vec![FLUSH_HINT_AREA_START]);
        assert_eq!(map.layout.dimms[1].flush_hints, vec![FLUSH_HINT_AREA_START + PAGE_SIZE]);
    }

    #[test]
    fn ram_above_three_gib_moves_to_four() {
        let memory = 3 * GIB + 2 * MIB;
        let (map, platform) = default_map(memory);
        assert_sane(&map, &platform, memory);
        assert_eq!(map.ram_blocks, vec![(0, 3 * GIB), (4 * GIB, 2 * MIB)]);
        // High RAM ends just past 4 GiB, so the first window rounds up to 5 GiB.
        assert_eq!(map.layout.dimms[0].spa_base, 5 * GIB);
    }

    #[test]
    fn odd_sized_dimms_keep_gib_alignment() {
        let platform = many_dimms(3, 2, GIB + 2 * MIB);
        let map = MemoryMap::new(&MachineConfig::default(), &platform).unwrap();
        assert_sane(&map, &platform, MachineConfig::default().memory);
        let bases: Vec<_> = map.layout.dimms.iter().map(|d| d.spa_base).collect();
        assert_eq!(bases, vec![4 * GIB, 6 * GIB, 8 * GIB]);
    }

    #[test]
    fn largest_platform_fits() {
        let platform = many_dimms(MAX_DIMMS, MAX_FLUSH_HINTS, 16 * MIB);
        let memory = 64 * GIB;
        let map = MemoryMap::new(&MachineConfig { memory, cpus: 254 }, &platform).unwrap();
        assert_sane(&map, &platform, memory);
        let hints = map.regions.iter().find(|r| r.name == "NVDIMM flush hints").unwrap();
        assert_eq!(hints.size, FLUSH_HINT_AREA_SIZE);
        assert!(hints.end() <= IOAPIC_ADDR);
    }

    #[test]
    fn window_beyond_address_space_is_refused() {
        let platform = many_dimms(2, 1, MAX_GUEST_PHYS / 2);
        let err = MemoryMap::new(&MachineConfig::default(), &platform).unwrap_err();
        assert!(matches!(err, MemoryMapError::AddressSpace { .. }), "{err}");
        assert!(err.to_string().contains("--nvdimm"));
    }

    #[test]
    fn bad_machine_config_is_refused() {
        let platform = PlatformConfig::default_in(Path::new("."));
        let err = MemoryMap::new(&MachineConfig { memory: 3 * MIB, cpus: 1 }, &platform).unwrap_err();
        assert_eq!(err, MemoryMapError::Config(MachineConfigError::MemoryTooSmall { got: 3 * MIB }));
    }
}
