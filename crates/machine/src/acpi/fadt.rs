//! FADT ("FACP"): a hardware-reduced ACPI platform with no legacy PC devices.
//! Hardware-reduced means no PM1/GPE blocks, no SCI wiring and no FACS. Power off
//! goes through the sleep control/status registers (ACPI 6.5 §4.8.3.7, with `\_S5`
//! in the DSDT), reboot through the reset register; events arrive through the
//! Generic Event Device in the DSDT.

use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::Aml;

use super::ids;
use super::power::{RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT};

/// IA-PC boot architecture flags (ACPI 6.5 table 5.11). Bit 0 (LPC/ISA legacy
/// devices) and bit 1 (8042) stay clear: the COM1 port is described in the DSDT.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// Length of the FADT the builder emits (ACPI 6.5 layout, 276 bytes).
pub fn len() -> usize {
    acpi_tables::fadt::FADT::len()
}

pub fn build(dsdt_addr: u64) -> Vec<u8> {
    let mut builder = FADTBuilder::new(ids::OEM_ID, ids::table_id(b"FACP"), ids::OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // Control-method (or absent) buttons: hardware-reduced platforms have no fixed ones.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .preferred_pm_profile(PmProfile::EnterpriseServer);
    builder.sleep_control_reg = io_byte(SLEEP_CONTROL_PORT);
    builder.sleep_status_reg = io_byte(SLEEP_STATUS_PORT);
    builder.reset_reg = io_byte(RESET_PORT);
    builder.reset_value = RESET_VALUE;
    builder.iapc_boot_arch = (IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT).into();
    builder.hypervisor_vendor_identity = u64::from_le_bytes(*b"VNVDIMM ").into();
    let mut bytes = Vec::with_capacity(len());
    builder.finalize().to_aml_bytes(&mut bytes);
    bytes
}

/// An 8-bit register in system I/O space, as the power device implements them.
fn io_byte(port: u16) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, u64::from(port))
}
