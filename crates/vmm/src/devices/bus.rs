//! A bus maps guest address ranges (port numbers or guest physical addresses) to
//! devices. Everything the guest hands us is checked: an access that is empty,
//! longer than 8 bytes, wraps around, or straddles a device's end reaches no device;
//! reads of nothing return all-ones (what an unclaimed PC bus reads) and writes to
//! nothing are dropped with a debug log. Nothing here panics on guest input.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Largest access a vCPU exit can carry (a 64-bit MMIO move).
pub const MAX_ACCESS: usize = 8;

/// What happens after a device handled a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Resume the vCPU.
    Continue,
    /// The guest asked to stop the machine (power off, reset, or a bare-metal exit code).
    Stop(crate::outcome::GuestOutcome),
    /// The doorbell served a `_DSM` call: poison may have changed (memslots to re-plan)
    /// and notifications may be queued, before the vCPU resumes.
    DsmServed,
}

/// A device on a bus. `offset` is relative to the start of the device's range and
/// `offset + data.len()` is within it.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]) -> Action;
}

pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus: device range [{start:#x}, +{len:#x}) is empty or wraps around")]
    BadRange { start: u64, len: u64 },
    #[error(
        "bus: device range [{start:#x}, +{len:#x}) overlaps [{other_start:#x}, +{other_len:#x})"
    )]
    Overlap {
        start: u64,
        len: u64,
        other_start: u64,
        other_len: u64,
    },
}

struct Entry {
    start: u64,
    len: u64,
    device: SharedDevice,
}

/// Ranges kept sorted and disjoint, so a lookup is a binary search.
#[derive(Default)]
pub struct Bus {
    name: &'static str,
    entries: Vec<Entry>,
}

impl Bus {
    pub fn new(name: &'static str) -> Self {
        Bus {
            name,
            entries: Vec::new(),
        }
    }

    pub fn insert(&mut self, start: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        if len == 0 || start.checked_add(len).is_none() {
            return Err(BusError::BadRange { start, len });
        }
        if let Some(other) = self
            .entries
            .iter()
            .find(|e| start < e.start + e.len && e.start < start + len)
        {
            return Err(BusError::Overlap {
                start,
                len,
                other_start: other.start,
                other_len: other.len,
            });
        }
        let at = self.entries.partition_point(|e| e.start < start);
        self.entries.insert(at, Entry { start, len, device });
        Ok(())
    }

    /// The device wholly containing `[addr, addr + size)` and the offset into it.
    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        if size == 0 || size > MAX_ACCESS {
            return None;
        }
        let end = addr.checked_add(size as u64)?;
        let idx = self
            .entries
            .partition_point(|e| e.start <= addr)
            .checked_sub(1)?;
        let entry = &self.entries[idx];
        (end <= entry.start + entry.len).then(|| (entry, addr - entry.start))
    }

    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.find(addr, data.len()) {
            Some((entry, offset)) => lock(&entry.device).read(offset, data),
            None => {
                log::debug!(
                    "{} bus: read of {} bytes at {addr:#x} hits no device",
                    self.name,
                    data.len()
                );
                data.fill(0xff);
            }
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Action {
        match self.find(addr, data.len()) {
            Some((entry, offset)) => lock(&entry.device).write(offset, data),
            None => {
                log::debug!(
                    "{} bus: write of {} bytes at {addr:#x} hits no device",
                    self.name,
                    data.len()
                );
                Action::Continue
            }
        }
    }
}

/// A device whose lock was poisoned by a panic elsewhere is still usable: its
/// state is plain data, and stopping the guest over it would be worse.
fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device
        .lock_unpoisoned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records accesses; reads return the low byte of the offset.
    #[derive(Default)]
    struct Probe {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Action {
            self.writes.push((offset, data.to_vec()));
            Action::Continue
        }
    }

    fn bus_with_probe(start: u64, len: u64) -> (Bus, Arc<Mutex<Probe>>) {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let mut bus = Bus::new("test");
        bus.insert(start, len, probe.clone()).unwrap();
        (bus, probe)
    }

    #[test]
    fn routes_with_offsets() {
        let (bus, probe) = bus_with_probe(0x1000, 0x10);
        let mut data = [0u8; 4];
        bus.read(0x1004, &mut data);
        assert_eq!(data, [4; 4]);
        bus.write(0x100c, &[1, 2, 3, 4]);
        assert_eq!(probe.lock().unwrap().writes, vec![(0xc, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn hostile_accesses_reach_no_device() {
        let (bus, probe) = bus_with_probe(0x1000, 0x10);
        let cases: [(u64, usize); 7] = [
            (0xfff, 1),        // just below
            (0x1010, 1),       // just above
            (0x100e, 4),       // straddles the end
            (0xffe, 4),        // straddles the start
            (u64::MAX - 1, 4), // wraps around
            (0x1000, 0),       // empty
            (0x1000, 9),       // longer than any exit
        ];
        for (addr, size) in cases {
            let mut data = vec![0u8; size];
            bus.read(addr, &mut data);
            assert!(
                data.iter().all(|&b| b == 0xff),
                "read {addr:#x}/{size}: {data:?}"
            );
            assert_eq!(bus.write(addr, &vec![7; size]), Action::Continue);
        }
        assert!(probe.lock().unwrap().writes.is_empty());
        // Exactly at the last byte still works.
        bus.write(0x100f, &[9]);
        assert_eq!(probe.lock().unwrap().writes.len(), 1);
    }

    #[test]
    fn overlapping_and_empty_ranges_are_refused() {
        let (mut bus, _) = bus_with_probe(0x1000, 0x10);
        let other: SharedDevice = Arc::new(Mutex::new(Probe::default()));
        assert!(matches!(
            bus.insert(0x100f, 1, other.clone()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0xff0, 0x11, other.clone()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0x2000, 0, other.clone()),
            Err(BusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.insert(u64::MAX, 2, other.clone()),
            Err(BusError::BadRange { .. })
        ));
        bus.insert(0x1010, 0x10, other.clone()).unwrap();
        bus.insert(0x0, 0x1000, other).unwrap();
        let mut data = [0u8; 1];
        bus.read(0x1011, &mut data);
        assert_eq!(data, [1]);
    }
}
