//! DSDT: the fixed devices of the machine — COM1 (a 16550 at 0x3F8, IRQ 4) and the
//! pvpanic port (`QEMU0001` at 0x505, the device QEMU describes the same way, so Linux's
//! `pvpanic-mmio` driver reports a kernel panic to the VMM) — and
//! `\_S5` so the OS knows the machine can power off (through the FADT's sleep control
//! register). The NVDIMM devices live in their own SSDT so the device model can
//! generate them independently of the machine; the Generic Event Device, which calls
//! into the NVDIMM root device, is appended to that SSDT (see `ged`).

use acpi_tables::aml::{Device, EISAName, Interrupt, Name, Package, ResourceTemplate, Scope, IO, ZERO};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use super::ids;
use super::power::S5_SLP_TYP;

pub const COM1_PORT: u16 = 0x3F8;
pub const COM1_IRQ: u32 = 4;
/// QEMU's ISA pvpanic port; Linux finds it through the `QEMU0001` device.
pub const PVPANIC_PORT: u16 = 0x505;
/// DSDT revision 2: AML integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;

pub fn build() -> Vec<u8> {
    let hid = EISAName::new("PNP0501");
    let io = IO::new(COM1_PORT, COM1_PORT, 1, 8);
    // Edge-triggered, active-high, exclusive: the ISA default for IRQ 4.
    let irq = Interrupt::new(true, true, false, false, COM1_IRQ);
    let crs = ResourceTemplate::new(vec![&io, &irq]);
    let com1_hid = Name::new("_HID".into(), &hid);
    let com1_uid = Name::new("_UID".into(), &ZERO);
    let com1_crs = Name::new("_CRS".into(), &crs);
    let com1 = Device::new("COM1".into(), vec![&com1_hid, &com1_uid, &com1_crs]);
    let panic_io = IO::new(PVPANIC_PORT, PVPANIC_PORT, 1, 1);
    let panic_crs = ResourceTemplate::new(vec![&panic_io]);
    let panic_hid = Name::new("_HID".into(), &"QEMU0001");
    let panic_crs = Name::new("_CRS".into(), &panic_crs);
    let pvpanic = Device::new("PEVT".into(), vec![&panic_hid, &panic_crs]);
    let sb = Scope::new("\\_SB_".into(), vec![&com1, &pvpanic]);

    // \_S5: SLP_TYPa, SLP_TYPb, two reserved. Hardware-reduced ACPI uses SLP_TYPa only.
    let slp_typ = S5_SLP_TYP;
    let s5_package = Package::new(vec![&slp_typ, &slp_typ, &ZERO, &ZERO]);
    let s5 = Name::new("_S5_".into(), &s5_package);

    let mut dsdt = Sdt::new(*b"DSDT", 36, DSDT_REVISION, ids::OEM_ID, ids::table_id(b"DSDT"), ids::OEM_REVISION);
    let mut body = Vec::new();
    s5.to_aml_bytes(&mut body);
    sb.to_aml_bytes(&mut body);
    dsdt.append_slice(&body);
    dsdt.as_slice().to_vec()
}
