//! One machine, fully described: configuration, memory map and ACPI tables.

use nvdimm_model::PlatformConfig;
use thiserror::Error;

use crate::acpi::{AcpiError, AcpiTables};
use crate::config::MachineConfig;
use crate::memory_map::{MemoryMap, MemoryMapError};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MachineError {
    #[error(transparent)]
    MemoryMap(#[from] MemoryMapError),
    #[error("ACPI tables: {0}")]
    Acpi(#[from] AcpiError),
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub config: MachineConfig,
    pub platform: PlatformConfig,
    pub memory_map: MemoryMap,
    pub acpi: AcpiTables,
}

impl Machine {
    /// Lays out the machine and builds its ACPI tables. Touches no files.
    pub fn new(config: MachineConfig, platform: PlatformConfig) -> Result<Self, MachineError> {
        let memory_map = MemoryMap::new(&config, &platform)?;
        let acpi = AcpiTables::build(&config, &platform, &memory_map)?;
        Ok(Machine { config, platform, memory_map, acpi })
    }
}
