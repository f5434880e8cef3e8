//! DSDT: the fixed devices of the machine — COM1 (a 16550 at 0x3F8, IRQ 4), COM2
//! (0x2F8, IRQ 3: the image's step results) and COM3 (0x3E8, GSI 10 of its own: the
//! guest agent's line), and the
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
pub const COM2_PORT: u16 = 0x2F8;
pub const COM2_IRQ: u32 = 3;
pub const COM3_PORT: u16 = 0x3E8;
/// COM3 has a line of its own, not COM1's IRQ 4 as on a PC: the VMM's UART interrupts
/// are edges (one irqfd write per event), and on a shared edge-triggered line an edge
/// from one port while the driver serves the other can be lost, which stalled the
/// agent's transmit whenever the kernel printed on the console at the same moment.
/// GSI 10 is free on this machine (COM2 3, COM1 4, GED 5).
pub const COM3_IRQ: u32 = 10;
/// QEMU's ISA pvpanic port; Linux finds it through the `QEMU0001` device.
pub const PVPANIC_PORT: u16 = 0x505;
/// DSDT revision 2: AML integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;

/// A 16550 at `port` (8 registers) on GSI `irq`, edge-triggered and active-high as ISA
/// serial ports are.
///
/// Every UART must be described here, not only COM1: on a hardware-reduced ACPI machine
/// Linux sets up no legacy ISA interrupts, so a port its 8250 driver finds only by the
/// legacy probe gets an IRQ number that maps to no interrupt pin and cannot be opened
/// (EIO). Described here, the port's GSI is mapped through the IO-APIC like COM1's.
struct Uart {
    name: &'static str,
    uid: u8,
    port: u16,
    irq: u32,
    shared: bool,
}

impl Aml for Uart {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let io = IO::new(self.port, self.port, 1, 8);
        let irq = Interrupt::new(true, true, false, self.shared, self.irq);
        let crs = ResourceTemplate::new(vec![&io, &irq]);
        let hid = EISAName::new("PNP0501");
        let hid = Name::new("_HID".into(), &hid);
        let uid = Name::new("_UID".into(), &self.uid);
        let crs = Name::new("_CRS".into(), &crs);
        Device::new(self.name.into(), vec![&hid, &uid, &crs]).to_aml_bytes(sink);
    }
}

pub fn build() -> Vec<u8> {
    let com1 = Uart { name: "COM1", uid: 0, port: COM1_PORT, irq: COM1_IRQ, shared: false };
    let com2 = Uart { name: "COM2", uid: 1, port: COM2_PORT, irq: COM2_IRQ, shared: false };
    let com3 = Uart { name: "COM3", uid: 2, port: COM3_PORT, irq: COM3_IRQ, shared: false };
    let panic_io = IO::new(PVPANIC_PORT, PVPANIC_PORT, 1, 1);
    let panic_crs = ResourceTemplate::new(vec![&panic_io]);
    let panic_hid = Name::new("_HID".into(), &"QEMU0001");
    let panic_crs = Name::new("_CRS".into(), &panic_crs);
    let pvpanic = Device::new("PEVT".into(), vec![&panic_hid, &panic_crs]);
    let sb = Scope::new("\\_SB_".into(), vec![&com1, &com2, &com3, &pvpanic]);

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
