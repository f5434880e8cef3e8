//! The root pointers: XSDT (64-bit table list) and RSDP revision 2 (points at the XSDT only).

use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use super::ids;

/// SDT header plus one 64-bit pointer per entry.
pub fn xsdt_len(entries: usize) -> usize {
    36 + 8 * entries
}

pub fn build_xsdt(entries: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(ids::OEM_ID, ids::table_id(b"XSDT"), ids::OEM_REVISION);
    for &addr in entries {
        xsdt.add_entry(addr);
    }
    let mut bytes = Vec::with_capacity(xsdt_len(entries.len()));
    xsdt.to_aml_bytes(&mut bytes);
    bytes
}

pub fn build_rsdp(xsdt_addr: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(Rsdp::len());
    Rsdp::new(ids::OEM_ID, xsdt_addr).to_aml_bytes(&mut bytes);
    bytes
}
