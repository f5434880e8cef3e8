use std::cell::Cell;

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
