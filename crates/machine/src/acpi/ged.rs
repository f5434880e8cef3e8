//! AML of the Generic Event Device (ACPI0013) through which the VMM raises ACPI
//! notifications. The device itself (pending register, interrupt) is the VMM's
//! (`vnvdimm_vmm::devices::ged`); its register page, GSI and event bits are defined here so
//! the DSDT, the memory map and the device agree.

use acpi_tables::aml::{
    And, Device, Field, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If, Interrupt, Local, Method,
    MethodCall, Name, OpRegion, OpRegionSpace, Path, ResourceTemplate, Store, ZERO,
};
use acpi_tables::Aml;

use crate::memory_map::GED_MMIO_ADDR;

/// One 32-bit pending-event register at the start of the GED page.
pub const GED_MMIO_SIZE: u64 = 4;
/// An IO APIC input no ISA device uses (COM1 is on 4); edge-triggered, active-high.
pub const GED_GSI: u32 = 5;
/// Pending-event bit: the NVDIMM mailbox has notification counters raised, call `\_SB.NVDR.NEVT()`.
pub const GED_EVENT_NVDIMM: u32 = 1 << 0;
/// Every bit `_EVT` handles; the device never reports others.
pub const GED_EVENTS_KNOWN: u32 = GED_EVENT_NVDIMM;

/// The NVDIMM root device's notification method (in the SSDT nvdimm-model builds).
const NEVT_PATH: &str = "\\_SB_.NVDR.NEVT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GedConfig {
    pub mmio_base: u32,
    pub gsi: u32,
}

impl Default for GedConfig {
    fn default() -> Self {
        GedConfig { mmio_base: GED_MMIO_ADDR as u32, gsi: GED_GSI }
    }
}

/// `Device (GED0)` as AML, for a `\_SB` scope. The machine puts it in the SSDT, next to
/// the NVDIMM root device whose `NEVT` it calls, so each table's names resolve inside it
/// (a DSDT calling into an SSDT cannot be disassembled or compiled on its own):
///
/// ```text
/// Device (GED0) {
///     Name (_HID, "ACPI0013")
///     Name (_UID, Zero)
///     Name (_CRS, ResourceTemplate () {
///         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }
///     })
///     OperationRegion (GDST, SystemMemory, base, 4)
///     Field (GDST, DWordAcc, NoLock, Preserve) { GDAT, 32 }
///     Method (_EVT, 1, Serialized) {
///         Local0 = GDAT          // reading clears the pending bits
///         If (Local0 & 1) { \_SB.NVDR.NEVT () }
///     }
/// }
/// ```
///
/// `_CRS` holds the interrupt and nothing else: Linux's GED driver (drivers/acpi/evged.c,
/// the same in 6.1 and 6.12) hands every `_CRS` resource but the end tag to
/// `acpi_dev_resource_interrupt` and fails the whole probe ("unable to parse IRQ
/// resource", "unable to parse the _CRS record") on anything that is not an interrupt,
/// so a `Memory32Fixed` for the register page left the device without a driver. `_EVT`
/// reaches the register through the OperationRegion, which needs no `_CRS` entry;
/// cloud-hypervisor's GED is declared the same way.
pub fn device_aml(config: &GedConfig) -> Vec<u8> {
    // Edge: the VMM raises one pulse per event batch (KVM_IRQ_LINE up then down, or an irqfd).
    let irq = Interrupt::new(true, true, false, false, config.gsi);
    let crs = ResourceTemplate::new(vec![&irq]);
    let base = u64::from(config.mmio_base);
    let size = GED_MMIO_SIZE;
    let region = OpRegion::new("GDST".into(), OpRegionSpace::SystemMemory, &base, &size);
    let field = Field::new(
        "GDST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        vec![FieldEntry::Named(*b"GDAT", 32)],
    );
    let gdat = Path::new("GDAT");
    let read = Store::new(&Local(0), &gdat);
    let nvdimm_bit = And::new(&ZERO, &Local(0), &GED_EVENT_NVDIMM);
    let nevt = MethodCall::new(NEVT_PATH.into(), vec![]);
    let if_nvdimm = If::new(&nvdimm_bit, vec![&nevt]);
    let evt = Method::new("_EVT".into(), 1, true, vec![&read, &if_nvdimm]);
    let hid = Name::new("_HID".into(), &"ACPI0013");
    let uid = Name::new("_UID".into(), &ZERO);
    let crs_name = Name::new("_CRS".into(), &crs);
    let device = Device::new("GED0".into(), vec![&hid, &uid, &crs_name, &region, &field, &evt]);
    let mut bytes = Vec::new();
    device.to_aml_bytes(&mut bytes);
    bytes
}

/// `Scope (\_SB) { Device (GED0) {...} }` appended to the NVDIMM SSDT `ssdt` (a complete
/// table from nvdimm-model), with its length and checksum fixed.
pub fn append_to_ssdt(mut ssdt: Vec<u8>, config: &GedConfig) -> Vec<u8> {
    let scope = acpi_tables::aml::Scope::raw("\\_SB_".into(), device_aml(config));
    ssdt.extend_from_slice(&scope);
    let len = ssdt.len() as u32;
    ssdt[4..8].copy_from_slice(&len.to_le_bytes());
    ssdt[9] = 0;
    ssdt[9] = 0u8.wrapping_sub(super::byte_sum(&ssdt));
    ssdt
}

#[cfg(test)]
mod tests;
