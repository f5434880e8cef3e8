//! The e820 map a Linux guest gets in boot_params: usable RAM, with the mailbox,
//! the legacy hole and the ACPI area reserved. NVDIMM windows and MMIO are absent:
//! the NFIT alone describes the pmem, so Linux never takes it for RAM.

use vnvdimm_machine::{MemoryMap, RegionKind};

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Entries sorted by address, adjacent entries of one kind merged.
pub fn from_memory_map(map: &MemoryMap) -> Vec<E820Entry> {
    let mut entries: Vec<E820Entry> = Vec::new();
    for region in &map.regions {
        let kind = match region.kind {
            RegionKind::Ram => E820_RAM,
            RegionKind::Reserved | RegionKind::Acpi => E820_RESERVED,
            RegionKind::Mmio | RegionKind::Pmem => continue,
        };
        match entries.last_mut() {
            Some(last) if last.kind == kind && last.addr + last.size == region.start => last.size += region.size,
            _ => entries.push(E820Entry { addr: region.start, size: region.size, kind }),
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nvdimm_model::config::{GIB, MIB};
    use nvdimm_model::PlatformConfig;
    use vnvdimm_machine::memory_map::{ACPI_AREA_END, LEGACY_HOLE_START};
    use vnvdimm_machine::MachineConfig;

    use super::*;

    fn map(memory: u64) -> MemoryMap {
        MemoryMap::new(&MachineConfig { memory, cpus: 1 }, &PlatformConfig::default_in(Path::new("."))).unwrap()
    }

    #[test]
    fn ram_only_and_pmem_absent() {
        let m = map(512 * MIB);
        let e = from_memory_map(&m);
        assert_eq!(
            e,
            vec![
                E820Entry { addr: 0, size: LEGACY_HOLE_START, kind: E820_RAM },
                E820Entry { addr: LEGACY_HOLE_START, size: ACPI_AREA_END - LEGACY_HOLE_START, kind: E820_RESERVED },
                E820Entry { addr: ACPI_AREA_END, size: 512 * MIB - ACPI_AREA_END, kind: E820_RAM },
            ]
        );
        for place in &m.layout.dimms {
            assert!(e.iter().all(|x| x.addr + x.size <= place.spa_base), "pmem window listed");
        }
        assert!(e.iter().all(|x| !(x.addr..x.addr + x.size).contains(&m.layout.mailbox) || x.kind == E820_RESERVED));
    }

    #[test]
    fn high_ram_above_four_gib() {
        let e = from_memory_map(&map(4 * GIB));
        let ram: u64 = e.iter().filter(|x| x.kind == E820_RAM).map(|x| x.size).sum();
        assert_eq!(ram, 4 * GIB - (ACPI_AREA_END - LEGACY_HOLE_START));
        assert_eq!(e.last(), Some(&E820Entry { addr: 4 * GIB, size: GIB, kind: E820_RAM }));
        assert!(e.iter().all(|x| x.addr + x.size <= 3 * GIB || x.addr >= 4 * GIB), "nothing in the MMIO hole");
    }
}
