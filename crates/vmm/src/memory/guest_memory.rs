//! Guest physical memory on vm-memory: RAM as a `GuestMemoryMmap` of anonymous
//! regions, and the NVDIMM windows, which are the DIMMs' backing files mapped shared
//! (guest stores land in the files). Every copy the VMM makes goes through vm-memory's
//! volatile accessors: vCPUs may write the same bytes at the same time.
//!
//! Mapping never reads or touches a page: a terabyte sparse file maps instantly
//! (`MAP_NORESERVE`, as vm-memory maps anonymous RAM too).

use std::fs::File;
use std::path::PathBuf;

use nvdimm_model::mailbox::MAILBOX_SIZE;
use nvdimm_model::volatile_mailbox::VolatileMailbox;
use thiserror::Error;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MmapRegion,
};
use vnvdimm_machine::MemoryMap;

#[derive(Debug, Error)]
pub enum GuestMemoryError {
    #[error("cannot map {size:#x} bytes of guest RAM: {reason}")]
    Ram { size: u64, reason: String },
    #[error("--nvdimm #{index}: cannot open backing file {path}: {source}")]
    Open {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--nvdimm #{index}: cannot map {size:#x} bytes of backing file {path}: {reason}")]
    MapWindow {
        index: usize,
        path: PathBuf,
        size: u64,
        reason: String,
    },
    #[error("guest write of {len} bytes at {gpa:#x} is outside guest RAM")]
    OutsideRam { gpa: u64, len: usize },
}

/// One DIMM's persistent-memory window.
pub struct PmemWindow {
    pub dimm: usize,
    pub gpa: u64,
    /// The backing file mapped shared (read-only for `readonly=on`), unmapped on drop.
    pub region: MmapRegion,
    /// Kept open for fdatasync when the guest stores to a flush hint.
    pub file: File,
    pub readonly: bool,
}

impl PmemWindow {
    pub fn size(&self) -> u64 {
        self.region.size() as u64
    }

    pub fn host_addr(&self) -> u64 {
        self.region.as_ptr() as u64
    }
}

pub struct GuestMemory {
    pub ram: GuestMemoryMmap,
    pub pmem: Vec<PmemWindow>,
}

impl GuestMemory {
    /// Maps RAM and every DIMM's backing file; reads no byte of either.
    pub fn new(map: &MemoryMap, platform: &nvdimm_model::PlatformConfig) -> Result<Self, GuestMemoryError> {
        let ranges = map
            .ram_blocks
            .iter()
            .map(|&(gpa, size)| {
                usize::try_from(size)
                    .map(|len| (GuestAddress(gpa), len))
                    .map_err(|_| GuestMemoryError::Ram { size, reason: "larger than this host's address space".into() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let total = map.ram_blocks.iter().map(|&(_, size)| size).sum();
        let ram = GuestMemoryMmap::from_ranges(&ranges)
            .map_err(|e| GuestMemoryError::Ram { size: total, reason: e.to_string() })?;
        let mut pmem = Vec::with_capacity(platform.dimms.len());
        for (index, (dimm, place)) in platform.dimms.iter().zip(&map.layout.dimms).enumerate() {
            let file = File::options()
                .read(true)
                .write(!dimm.readonly)
                .open(&dimm.path)
                .map_err(|source| GuestMemoryError::Open { index, path: dimm.path.clone(), source })?;
            let map_err = |reason: String| GuestMemoryError::MapWindow {
                index,
                path: dimm.path.clone(),
                size: dimm.size,
                reason,
            };
            let len = usize::try_from(dimm.size).map_err(|_| map_err("larger than this host's address space".into()))?;
            let prot = if dimm.readonly { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
            let mapped = file.try_clone().map_err(|e| map_err(e.to_string()))?;
            let region = MmapRegionBuilder::new(len)
                .with_file_offset(FileOffset::new(mapped, 0))
                .with_mmap_prot(prot)
                .with_mmap_flags(libc::MAP_SHARED | libc::MAP_NORESERVE)
                .build()
                .map_err(|e| map_err(e.to_string()))?;
            pmem.push(PmemWindow { dimm: index, gpa: place.spa_base, region, file, readonly: dimm.readonly });
        }
        Ok(GuestMemory { ram, pmem })
    }

    pub fn write_ram(&self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.ram
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| GuestMemoryError::OutsideRam { gpa, len: data.len() })
    }

    pub fn read_ram(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len();
        self.ram.read_slice(buf, GuestAddress(gpa)).map_err(|_| GuestMemoryError::OutsideRam { gpa, len })
    }

    /// Each RAM region as (guest address, size, host address), for KVM memslots.
    pub fn ram_regions(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.ram.iter().map(|r| (r.start_addr().0, r.len(), r.as_ptr() as u64))
    }

    /// The `_DSM` mailbox at `base` (in one RAM block, as the memory map places it);
    /// None if it is not, which is a layout bug.
    pub fn mailbox(&self, base: u64) -> Option<VolatileMailbox<'_>> {
        self.ram.get_slice(GuestAddress(base), MAILBOX_SIZE as usize).ok().map(VolatileMailbox::new)
    }
}

#[cfg(test)]
mod tests;
