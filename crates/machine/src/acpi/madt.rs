//! MADT ("APIC"): one enabled local APIC per vCPU, one IO APIC, an interrupt source
//! override for each ISA IRQ a device of the machine uses, and LINT1 as NMI.
//!
//! No 8259 (PCAT_COMPAT clear). Linux identity-maps ISA IRQs 0-15 to IO APIC inputs
//! with ISA polarity unless an override says otherwise; the overrides here state the
//! wiring explicitly (IRQ 4 -> GSI 4, edge, active-high) instead of leaving it to that
//! default. There is no IRQ 0 -> GSI 2 override: a hardware-reduced platform has no
//! PIT timer for Linux to set up (it skips `timer_init`), and no SCI override because
//! hardware-reduced ACPI has no SCI. The GED's GSI 5 is not an ISA IRQ: its `_CRS`
//! names the GSI and its trigger mode itself.

use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::Aml;

use super::dsdt::COM1_IRQ;
use super::ids;
use crate::memory_map::{IOAPIC_ADDR, LAPIC_ADDR};

/// Global system interrupt number of the IO APIC's first input.
pub const IOAPIC_GSI_BASE: u32 = 0;
/// (ISA IRQ, GSI) pairs with an interrupt source override entry.
pub const ISA_IRQ_OVERRIDES: [(u8, u32); 1] = [(COM1_IRQ as u8, COM1_IRQ)];
/// MPS INTI flags: polarity active high (01), trigger mode edge (01 << 2).
const INTI_EDGE_ACTIVE_HIGH: u16 = 0b0101;
const MADT_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
/// Local APIC NMI structure's processor UID meaning "every processor".
const ALL_PROCESSORS: u8 = 0xFF;
const LINT1: u8 = 1;

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
    // acpi_tables 0.2.1 has no override or NMI structures: append them and fix the header.
    for (irq, gsi) in ISA_IRQ_OVERRIDES {
        bytes.extend([MADT_INTERRUPT_SOURCE_OVERRIDE, 10, 0, irq]);
        bytes.extend(gsi.to_le_bytes());
        bytes.extend(INTI_EDGE_ACTIVE_HIGH.to_le_bytes());
    }
    bytes.extend([MADT_LOCAL_APIC_NMI, 6, ALL_PROCESSORS]);
    bytes.extend(INTI_EDGE_ACTIVE_HIGH.to_le_bytes());
    bytes.push(LINT1);
    let len = bytes.len() as u32;
    bytes[4..8].copy_from_slice(&len.to_le_bytes());
    bytes[9] = 0;
    bytes[9] = 0u8.wrapping_sub(super::byte_sum(&bytes));
    bytes
}
