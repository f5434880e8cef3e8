//! SRAT (System Resource Affinity Table): which proximity domain each vCPU and each
//! range of memory belongs to, so Linux builds its NUMA nodes from it.
//!
//! Layout (the NFIT's SPA ranges name the same domains, `nvdimm_model::nfit::proximity_domain`):
//!
//! | domain | what | entries |
//! |---|---|---|
//! | 0 | every vCPU, all RAM | one processor local APIC affinity per vCPU (enabled); one memory affinity per RAM block (enabled) |
//! | `i + 1` | DIMM `i`'s window | one memory affinity (enabled, non-volatile) |
//!
//! Why the windows are listed: since Linux 5.10 a proximity domain that no SRAT entry
//! names maps to no node (`pxm_to_node` gives -1), and the NFIT fallback
//! (`phys_to_target_node`) finds a node only for addresses some SRAT memory entry
//! covers. Without these entries a region's `target_node` is -1 and kmem refuses it
//! ("rejecting DAX region with invalid node"). The windows are absent from the e820
//! map, so Linux keeps them as reserved node memory: the DIMM nodes stay offline
//! (memoryless) until `daxctl reconfigure-device -m system-ram` hot-adds the window into
//! its node. Not hot-pluggable: the windows are present from boot (and with that flag
//! Linux would treat them as movable for `movable_node`), as QEMU marks its NVDIMMs.
//!
//! Revision 3 (ACPI 6.x): Linux keeps only 8 bits of a memory domain in revision 1
//! tables, and acpi_tables 0.2.1's `SRAT` writes revision 1 and has no processor
//! affinity structure, so the header and those structures are written here and the
//! crate's `MemoryAffinity` serializes the memory entries.

use acpi_tables::sdt::Sdt;
use acpi_tables::srat::MemoryAffinity;
use acpi_tables::Aml;
use nvdimm_model::nfit::HOST_PROXIMITY_DOMAIN;
use nvdimm_model::spa_map::SpaMap;
use nvdimm_model::PlatformConfig;

use super::ids;
use crate::memory_map::MemoryMap;

pub const REVISION: u8 = 3;
/// SDT header, then u32 "table revision" (1 for backward compatibility) and u64 reserved.
pub const HEADER_LEN: usize = 48;
pub const TYPE_PROCESSOR_APIC: u8 = 0;
pub const TYPE_MEMORY: u8 = 1;
pub const PROCESSOR_APIC_LEN: usize = 16;
/// Linux drops the whole SRAT if a memory entry is not exactly this long.
pub const MEMORY_LEN: usize = 40;
/// Processor and memory affinity flags bit 0: the entry is in use.
pub const FLAG_ENABLED: u32 = 1 << 0;
pub const MEMORY_FLAG_HOT_PLUGGABLE: u32 = 1 << 1;
pub const MEMORY_FLAG_NON_VOLATILE: u32 = 1 << 2;

/// One memory affinity entry as the SRAT states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryDomain {
    pub domain: u32,
    pub base: u64,
    pub length: u64,
    pub flags: u32,
}

/// Every memory affinity entry of the machine, in table order: RAM blocks, then windows.
pub fn memory_domains(platform: &PlatformConfig, map: &MemoryMap) -> Vec<MemoryDomain> {
    let ram = map.ram_blocks.iter().map(|&(base, length)| MemoryDomain {
        domain: HOST_PROXIMITY_DOMAIN,
        base,
        length,
        flags: FLAG_ENABLED,
    });
    // One entry per NFIT range (an interleave set's DIMMs share theirs), in its domain.
    let spa_map = SpaMap::new(platform, &map.layout);
    let windows: Vec<MemoryDomain> = spa_map
        .windows()
        .iter()
        .map(|w| MemoryDomain {
            domain: w.proximity_domain,
            base: w.base,
            length: w.len,
            flags: FLAG_ENABLED | MEMORY_FLAG_NON_VOLATILE,
        })
        .collect();
    ram.chain(windows).collect()
}

/// Processor local APIC affinity: the APIC id the MADT gives vCPU `cpu`, in `domain`.
fn processor(cpu: u8, domain: u32) -> [u8; PROCESSOR_APIC_LEN] {
    let d = domain.to_le_bytes();
    let mut e = [0u8; PROCESSOR_APIC_LEN];
    e[0] = TYPE_PROCESSOR_APIC;
    e[1] = PROCESSOR_APIC_LEN as u8;
    e[2] = d[0]; // proximity domain bits 7:0
    e[3] = cpu; // APIC id (madt.rs: APIC id = vCPU index)
    e[4..8].copy_from_slice(&FLAG_ENABLED.to_le_bytes());
    // e[8]: local SAPIC EID, unused on x86.
    e[9..12].copy_from_slice(&d[1..4]); // proximity domain bits 31:8
                                        // e[12..16]: clock domain 0.
    e
}

fn memory(entry: &MemoryDomain) -> Vec<u8> {
    let mut affinity = MemoryAffinity::new(entry.domain, entry.base, entry.length).enabled();
    if entry.flags & MEMORY_FLAG_NON_VOLATILE != 0 {
        affinity = affinity.nonvolatile();
    }
    if entry.flags & MEMORY_FLAG_HOT_PLUGGABLE != 0 {
        affinity = affinity.hotpluggable();
    }
    let mut bytes = Vec::with_capacity(MEMORY_LEN);
    affinity.to_aml_bytes(&mut bytes);
    bytes
}

pub fn build(cpus: u8, platform: &PlatformConfig, map: &MemoryMap) -> Vec<u8> {
    let mut table =
        Sdt::new(*b"SRAT", HEADER_LEN as u32, REVISION, ids::OEM_ID, ids::table_id(b"SRAT"), ids::OEM_REVISION);
    table.write_u32(36, 1);
    for cpu in 0..cpus {
        table.append_slice(&processor(cpu, HOST_PROXIMITY_DOMAIN));
    }
    for entry in memory_domains(platform, map) {
        table.append_slice(&memory(&entry));
    }
    table.as_slice().to_vec()
}

#[cfg(test)]
mod tests;
