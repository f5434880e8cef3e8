//! The pvpanic port (0x505, `QEMU0001` in the DSDT), as QEMU's ISA pvpanic device: a
//! guest kernel with the `pvpanic-mmio` driver writes `PANICKED` from its panic
//! notifier, and the run ends as a crash (exit status 3) instead of the reboot that
//! `panic=-1` would make of it. Reads return the events this device supports; Linux
//! only reports those.

use crate::devices::bus::{Action, BusDevice};
use crate::outcome::GuestOutcome;

pub use vnvdimm_machine::acpi::dsdt::PVPANIC_PORT;

/// The guest panicked.
pub const PANICKED: u8 = 1 << 0;
/// A crash kernel (kdump) is taking over; the guest goes on running.
pub const CRASH_LOADED: u8 = 1 << 1;

pub struct PvPanic;

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = PANICKED | CRASH_LOADED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Action {
        match data.first() {
            Some(&events) if events & PANICKED != 0 => {
                Action::Stop(GuestOutcome::Crashed("kernel panic (pvpanic)".into()))
            }
            Some(&events) if events & CRASH_LOADED != 0 => {
                log::debug!("pvpanic: the guest loads its crash kernel");
                Action::Continue
            }
            _ => Action::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_ends_the_run_as_a_crash_and_kdump_does_not() {
        let mut p = PvPanic;
        let mut caps = [0u8];
        p.read(0, &mut caps);
        assert_eq!(caps, [PANICKED | CRASH_LOADED]);
        assert_eq!(p.write(0, &[PANICKED]), Action::Stop(GuestOutcome::Crashed("kernel panic (pvpanic)".into())));
        assert_eq!(p.write(0, &[CRASH_LOADED]), Action::Continue);
        assert_eq!(p.write(0, &[0]), Action::Continue);
        assert_eq!(p.write(0, &[]), Action::Continue, "a zero-width access is not a panic");
    }
}
