//! The debug ports bare-metal guest programs report through (firmware/README.md):
//! a 32-bit OUT to `REPORT_PORT` appends a word to the report, an 8-bit OUT to
//! `EXIT_PORT` ends the run with that exit code.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Mutex};

use vnvdimm_vmm::devices::bus::{Action, BusDevice};
use vnvdimm_vmm::outcome::GuestOutcome;

pub const REPORT_PORT: u16 = 0x510;
pub const EXIT_PORT: u16 = 0x514;
pub const DEBUG_PORTS_LEN: u64 = 8;
/// A runaway guest must not grow the report without bound.
pub const MAX_REPORT_WORDS: usize = 1 << 16;

/// Words the guest reported, in order.
pub type Report = Arc<Mutex<Vec<u32>>>;

pub struct DebugPorts {
    report: Report,
}

impl DebugPorts {
    pub fn new(report: Report) -> Self {
        DebugPorts { report }
    }
}

impl BusDevice for DebugPorts {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        const REPORT: u64 = 0;
        const EXIT: u64 = (EXIT_PORT - REPORT_PORT) as u64;
        match (offset, data) {
            (REPORT, &[a, b, c, d]) => {
                let mut report = self.report.lock_unpoisoned();
                if report.len() < MAX_REPORT_WORDS {
                    report.push(u32::from_le_bytes([a, b, c, d]));
                }
                Action::Continue
            }
            (EXIT, &[code]) => Action::Stop(GuestOutcome::DebugExit(code)),
            _ => {
                log::debug!(
                    "debug port: ignored {}-byte write at offset {offset}",
                    data.len()
                );
                Action::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_and_exit() {
        let report = Report::default();
        let mut dev = DebugPorts::new(report.clone());
        assert_eq!(
            dev.write(0, &0xdead_beefu32.to_le_bytes()),
            Action::Continue
        );
        assert_eq!(dev.write(0, &[1, 2]), Action::Continue); // wrong width: ignored
        assert_eq!(dev.write(4, &[7]), Action::Stop(GuestOutcome::DebugExit(7)));
        assert_eq!(dev.write(4, &[7, 0]), Action::Continue);
        assert_eq!(*report.lock().unwrap(), vec![0xdead_beef]);
    }
}
