use std::cell::Cell;
use std::process::Command;

use acpi_tables::sdt::Sdt;

use super::*;

#[derive(Default)]
struct CountingLine(Cell<u32>);

impl IrqLine for CountingLine {
    fn trigger(&self) -> io::Result<()> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

fn read32(ged: &Ged) -> u32 {
    let mut data = [0xAAu8; 4];
    ged.mmio_read(0, &mut data);
    u32::from_le_bytes(data)
}

#[test]
fn raise_sets_the_bit_and_fires_the_interrupt_once_per_raise() {
    let ged = Ged::new();
    let line = CountingLine::default();
    assert_eq!(read32(&ged), 0);
    ged.raise(GED_EVENT_NVDIMM, &line).unwrap();
    ged.raise(GED_EVENT_NVDIMM, &line).unwrap();
    assert_eq!(line.0.get(), 2);
    assert_eq!(ged.pending(), GED_EVENT_NVDIMM);
    assert_eq!(read32(&ged), GED_EVENT_NVDIMM, "_EVT sees the event");
    assert_eq!(read32(&ged), 0, "reading cleared it");
}

#[test]
fn unknown_bits_are_never_pending() {
    let ged = Ged::new();
    ged.raise(0xFFFF_FFFF, &CountingLine::default()).unwrap();
    assert_eq!(read32(&ged), GED_EVENTS_KNOWN);
}

#[test]
fn other_offsets_read_zero_and_do_not_clear() {
    let ged = Ged::new();
    ged.raise(GED_EVENT_NVDIMM, &CountingLine::default())
        .unwrap();
    let mut data = [0xAAu8; 4];
    ged.mmio_read(4, &mut data);
    assert_eq!(data, [0; 4]);
    ged.mmio_write(0, &[0; 4]);
    assert_eq!(read32(&ged), GED_EVENT_NVDIMM, "writes are ignored");
}

#[test]
fn a_narrow_read_keeps_the_bits_it_did_not_return() {
    let ged = Ged::new();
    ged.pending.store(0x0100_0001, Ordering::SeqCst);
    let mut byte = [0u8; 1];
    ged.mmio_read(0, &mut byte);
    assert_eq!(byte, [1]);
    assert_eq!(ged.pending(), 0x0100_0000);
    let mut wide = [0xAAu8; 8];
    ged.mmio_read(0, &mut wide);
    assert_eq!(wide, [0, 0, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn irqfd_line_signals_its_eventfd() {
    let line = IrqFd(EventFd::new(libc::EFD_NONBLOCK).unwrap());
    Ged::new().raise(GED_EVENT_NVDIMM, &line).unwrap();
    assert_eq!(line.0.read().unwrap(), 1);
}

/// ACPICA's disassembler reads the AML back as the ASL in `dsdt_aml`'s doc comment.
#[test]
fn aml_disassembles_to_the_documented_device() {
    let config = GedConfig {
        mmio_base: 0xC000_1000,
        gsi: 5,
    };
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, *b"VNVDMM", *b"GEDTEST ", 1);
    dsdt.append_slice(&dsdt_aml(&config));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dsdt.dat"), dsdt.as_slice()).unwrap();
    let out = Command::new("iasl")
        .current_dir(dir.path())
        .args(["-d", "dsdt.dat"])
        .output()
        .expect("iasl must be installed (Debian acpica-tools, scripts/install-deps)");
    let dsl = std::fs::read_to_string(dir.path().join("dsdt.dsl"))
        .unwrap_or_else(|_| panic!("iasl -d failed: {}", String::from_utf8_lossy(&out.stderr)));
    let squashed: String = dsl.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Device (GED0)",
        "Name (_HID, \"ACPI0013\" /* Generic Event Device */)",
        // The interrupt is all of _CRS (Linux's evged fails the probe on any other resource).
        "Name (_CRS, ResourceTemplate () // _CRS: Current Resource Settings { \
         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000005, } })",
        "OperationRegion (GDST, SystemMemory, 0xC0001000, 0x04)",
        "Field (GDST, DWordAcc, NoLock, Preserve) { GDAT, 32 }",
        "Method (_EVT, 1, Serialized) // _EVT: Event { Local0 = GDAT /* \\_SB_.GED0.GDAT */ \
         If ((Local0 & One)) { \\_SB.NVDR.NEVT () } }",
    ] {
        assert!(squashed.contains(needle), "{needle:?} not in:\n{dsl}");
    }
}
