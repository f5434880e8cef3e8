//! MADT ("APIC"): one enabled local APIC per vCPU and one IO APIC.
//! No 8259 (PCAT_COMPAT clear) and no interrupt source overrides: ISA IRQs map
//! 1:1 to IO APIC inputs with the ISA default polarity, which is what COM1 uses.

use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::Aml;

use super::ids;
use crate::memory_map::{IOAPIC_ADDR, LAPIC_ADDR};

/// Global system interrupt number of the IO APIC's first input.
pub const IOAPIC_GSI_BASE: u32 = 0;

/// The IO APIC takes the first id after the CPUs' so no two APIC ids collide.
pub fn ioapic_id(cpus: u8) -> u8 {
    cpus
}

pub fn build(cpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        ids::OEM_ID,
        ids::table_id(b"APIC"),
        ids::OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR as u32),
    );
    for cpu in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(ioapic_id(cpus), IOAPIC_ADDR as u32, IOAPIC_GSI_BASE));
    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);
    bytes
}
