//! The x86_64 guest machine that vnvdimm's KVM VMM runs: where RAM, the ACPI
//! tables, the `_DSM` mailbox, the doorbell, the flush hints and the NVDIMM
//! windows live in guest physical memory, and the ACPI tables that describe it.
//! Pure data: nothing here opens `/dev/kvm` or touches backing files.

pub mod acpi;
pub mod config;
pub mod machine;
pub mod memory_map;

pub use acpi::{AcpiError, AcpiTable, AcpiTables};
pub use config::{MachineConfig, MachineConfigError};
pub use machine::{Machine, MachineError};
pub use memory_map::{MemoryMap, MemoryMapError, Region, RegionKind};
