//! The complete ACPI table set of the machine, placed in the ACPI area of the
//! memory map with every pointer fixed up, ready for the VMM to copy into guest RAM.
//!
//! Layout of the ACPI area: the RSDP at `RSDP_ADDR`, then XSDT, FACP, APIC, DSDT,
//! SSDT, NFIT and SRAT, each 16-byte aligned. The XSDT lists FACP, APIC, SSDT, NFIT and
//! SRAT; the FADT's X_DSDT points at the DSDT. The SRAT, added last, sits behind the
//! older tables so their addresses did not move for it.

pub mod dsdt;
mod fadt;
pub mod ged;
mod ids;
mod madt;
pub mod power;
mod root;
pub mod srat;

use nvdimm_model::PlatformConfig;
use thiserror::Error;

pub use dsdt::{COM1_IRQ, COM1_PORT, COM2_IRQ, COM2_PORT, COM3_IRQ, COM3_PORT};
pub use ids::{table_id, OEM_ID, OEM_REVISION};
pub use madt::{ioapic_id, IOAPIC_GSI_BASE, ISA_IRQ_OVERRIDES};

use crate::config::MachineConfig;
use crate::memory_map::{MemoryMap, ACPI_AREA_END, RSDP_ADDR};

/// Tables start 16-byte aligned; Linux needs none, but it keeps hexdumps readable.
pub const TABLE_ALIGN: u64 = 16;
/// Length of an ACPI 2.0+ RSDP.
pub const RSDP_LEN: usize = 36;
/// Signatures in the order the tables sit in memory (and the XSDT's entries, minus DSDT).
pub const TABLE_ORDER: [&str; 7] = ["XSDT", "FACP", "APIC", "DSDT", "SSDT", "NFIT", "SRAT"];
const XSDT_ENTRIES: [&str; 5] = ["FACP", "APIC", "SSDT", "NFIT", "SRAT"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AcpiError {
    #[error("the {signature} generator of nvdimm-model returned a bad table: {reason}")]
    BadTable { signature: &'static str, reason: String },
    #[error("the ACPI tables need {need:#x} bytes up to {end:#x}, past the ACPI area's end {limit:#x}; use fewer --nvdimm or flush-hints")]
    TooLarge { need: u64, end: u64, limit: u64 },
}

/// One table and where it goes in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTable {
    /// The 4-character signature, e.g. "FACP".
    pub signature: String,
    pub guest_addr: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    /// Every SDT (DSDT included), in memory order.
    pub tables: Vec<AcpiTable>,
    pub rsdp_addr: u64,
    pub rsdp: Vec<u8>,
}

impl AcpiTables {
    /// Builds every table for `machine` with the NVDIMMs of `platform` placed as in `map`.
    pub fn build(machine: &MachineConfig, platform: &PlatformConfig, map: &MemoryMap) -> Result<Self, AcpiError> {
        let ssdt = nvdimm_model::aml::build_ssdt(platform, &map.layout);
        check_sdt("SSDT", &ssdt)?;
        let ssdt = ged::append_to_ssdt(ssdt, &ged::GedConfig::default());
        let nfit = nvdimm_model::nfit::build(platform, &map.layout);
        check_sdt("NFIT", &nfit)?;
        let madt = madt::build(machine.cpus);
        let dsdt = dsdt::build();
        let srat = srat::build(machine.cpus, platform, map);

        // Sizes are known before addresses: place first, then build the pointer tables.
        let sizes = [
            root::xsdt_len(XSDT_ENTRIES.len()),
            fadt::len(),
            madt.len(),
            dsdt.len(),
            ssdt.len(),
            nfit.len(),
            srat.len(),
        ];
        let mut addrs = [0u64; TABLE_ORDER.len()];
        let mut next = (RSDP_ADDR + RSDP_LEN as u64).next_multiple_of(TABLE_ALIGN);
        for (addr, size) in addrs.iter_mut().zip(sizes) {
            *addr = next;
            next = (next + size as u64).next_multiple_of(TABLE_ALIGN);
        }
        let end = addrs[TABLE_ORDER.len() - 1] + sizes[TABLE_ORDER.len() - 1] as u64;
        if end > ACPI_AREA_END {
            return Err(AcpiError::TooLarge { need: end - RSDP_ADDR, end, limit: ACPI_AREA_END });
        }
        let addr_of = |sig: &str| addrs[TABLE_ORDER.iter().position(|s| *s == sig).expect("known signature")];

        let xsdt = root::build_xsdt(&XSDT_ENTRIES.map(addr_of));
        let facp = fadt::build(addr_of("DSDT"));
        let bytes = [xsdt, facp, madt, dsdt, ssdt, nfit, srat];
        let tables = TABLE_ORDER
            .iter()
            .zip(addrs)
            .zip(bytes)
            .map(|((sig, guest_addr), bytes)| AcpiTable { signature: sig.to_string(), guest_addr, bytes })
            .collect();
        Ok(AcpiTables { tables, rsdp_addr: RSDP_ADDR, rsdp: root::build_rsdp(addr_of("XSDT")) })
    }

    pub fn get(&self, signature: &str) -> Option<&AcpiTable> {
        self.tables.iter().find(|t| t.signature == signature)
    }

    /// Everything to copy into guest memory: (address, bytes), RSDP first.
    pub fn blobs(&self) -> impl Iterator<Item = (u64, &[u8])> {
        std::iter::once((self.rsdp_addr, self.rsdp.as_slice()))
            .chain(self.tables.iter().map(|t| (t.guest_addr, t.bytes.as_slice())))
    }

    /// What `vnvdimm acpi dump` writes: (file name, guest address, bytes), `RSDP.dat`
    /// first, then `<SIG>.dat` in memory order.
    pub fn dump_files(&self) -> Vec<(String, u64, &[u8])> {
        std::iter::once(("RSDP.dat".to_string(), self.rsdp_addr, self.rsdp.as_slice()))
            .chain(self.tables.iter().map(|t| (format!("{}.dat", t.signature), t.guest_addr, t.bytes.as_slice())))
            .collect()
    }
}

/// Sum of all bytes modulo 256; a valid ACPI table (or RSDP part) sums to zero.
pub fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// Refuses a table from another crate unless its header is consistent, so a
/// generator bug shows up here instead of as a silently ignored table in the guest.
fn check_sdt(signature: &'static str, bytes: &[u8]) -> Result<(), AcpiError> {
    let bad = |reason: String| Err(AcpiError::BadTable { signature, reason });
    if bytes.len() < 36 {
        return bad(format!("{} bytes is shorter than an SDT header", bytes.len()));
    }
    if &bytes[..4] != signature.as_bytes() {
        return bad(format!("signature is {:?}", String::from_utf8_lossy(&bytes[..4])));
    }
    let length = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if length as usize != bytes.len() {
        return bad(format!("header length {length} but {} bytes", bytes.len()));
    }
    if byte_sum(bytes) != 0 {
        return bad("checksum does not make the bytes sum to zero".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
