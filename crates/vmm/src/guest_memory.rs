//! Guest physical memory: anonymous RAM blocks and the NVDIMM windows, which are
//! the DIMMs' backing files mapped shared (guest stores land in the files).

use std::fs::File;
use std::path::PathBuf;

use nvdimm_model::mailbox::MailboxMemory;
use thiserror::Error;
use vnvdimm_machine::MemoryMap;

use crate::mmap::{Mapping, MmapError};

#[derive(Debug, Error)]
pub enum GuestMemoryError {
    #[error(transparent)]
    Mmap(#[from] MmapError),
    #[error("--nvdimm #{index}: cannot open backing file {path}: {source}")]
    Open {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("guest write of {len} bytes at {gpa:#x} is outside guest RAM")]
    OutsideRam { gpa: u64, len: usize },
}

pub struct RamBlock {
    pub gpa: u64,
    pub mapping: Mapping,
}

/// One DIMM's persistent-memory window.
pub struct PmemWindow {
    pub dimm: usize,
    pub gpa: u64,
    pub mapping: Mapping,
    /// Kept open for fdatasync when the guest stores to a flush hint.
    pub file: File,
    pub readonly: bool,
}

pub struct GuestMemory {
    pub ram: Vec<RamBlock>,
    pub pmem: Vec<PmemWindow>,
}

impl GuestMemory {
    /// Maps RAM and every DIMM's backing file; reads no byte of either.
    pub fn new(
        map: &MemoryMap,
        platform: &nvdimm_model::PlatformConfig,
    ) -> Result<Self, GuestMemoryError> {
        let ram = map
            .ram_blocks
            .iter()
            .map(|&(gpa, size)| {
                Ok(RamBlock {
                    gpa,
                    mapping: Mapping::anonymous(size, "guest RAM")?,
                })
            })
            .collect::<Result<Vec<_>, GuestMemoryError>>()?;
        let mut pmem = Vec::with_capacity(platform.dimms.len());
        for (index, (dimm, place)) in platform.dimms.iter().zip(&map.layout.dimms).enumerate() {
            let file = File::options()
                .read(true)
                .write(!dimm.readonly)
                .open(&dimm.path)
                .map_err(|source| GuestMemoryError::Open {
                    index,
                    path: dimm.path.clone(),
                    source,
                })?;
            let what = format!("--nvdimm #{index} backing file {}", dimm.path.display());
            let mapping = Mapping::shared_file(&file, dimm.size, !dimm.readonly, &what)?;
            pmem.push(PmemWindow {
                dimm: index,
                gpa: place.spa_base,
                mapping,
                file,
                readonly: dimm.readonly,
            });
        }
        Ok(GuestMemory { ram, pmem })
    }

    /// The RAM block holding all of `gpa..gpa + len` and the offset of `gpa` in it.
    fn ram_block(&self, gpa: u64, len: usize) -> Result<(&RamBlock, u64), GuestMemoryError> {
        gpa.checked_add(len as u64)
            .and_then(|end| {
                self.ram
                    .iter()
                    .find(|b| gpa >= b.gpa && end <= b.gpa + b.mapping.size())
            })
            .map(|b| (b, gpa - b.gpa))
            .ok_or(GuestMemoryError::OutsideRam { gpa, len })
    }

    pub fn write_ram(&self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let (block, offset) = self.ram_block(gpa, data.len())?;
        block.mapping.write(offset, data);
        Ok(())
    }

    pub fn read_ram(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let (block, offset) = self.ram_block(gpa, buf.len())?;
        block.mapping.read(offset, buf);
        Ok(())
    }

    /// The mailbox at `base` as the device model's `MailboxMemory`.
    pub fn mailbox(&self, base: u64) -> GuestMailbox<'_> {
        GuestMailbox { mem: self, base }
    }
}

/// The `_DSM` mailbox in guest RAM. Offsets come from the device model's fixed ABI,
/// so an out-of-range access is a bug: it reads zeros and writes nothing.
pub struct GuestMailbox<'a> {
    mem: &'a GuestMemory,
    base: u64,
}

impl MailboxMemory for GuestMailbox<'_> {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        if self.mem.read_ram(self.base + offset as u64, buf).is_err() {
            buf.fill(0);
        }
    }
    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        let _ = self.mem.write_ram(self.base + offset as u64, data);
    }
}
