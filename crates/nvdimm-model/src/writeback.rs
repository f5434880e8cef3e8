//! Guest writes that never reach the disk. The guest stores into a shared mapping of the
//! backing file; the kernel writes the pages back later, and if that fails (a full file
//! system under a sparse file, an I/O error) nobody is told: the guest reads its data
//! back from the page cache while the file holds nothing (issue 10, point 7). Such an
//! error is reported to the next `fsync` of each descriptor opened before it, so a
//! [`WritebackProbe`] — a duplicate of the DIMM's own descriptor — asks regularly, and
//! remembers a failure for [`crate::dimm::Dimm::close_clean`], which then refuses to
//! call the stop clean.

use crate::sync::LockUnpoisoned;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Checks one DIMM's backing file for failed write-back, from any thread, without the
/// platform lock.
#[derive(Debug)]
pub struct WritebackProbe {
    pub path: PathBuf,
    file: File,
    failure: Arc<Mutex<Option<String>>>,
}

impl WritebackProbe {
    pub(crate) fn new(path: PathBuf, file: File, failure: Arc<Mutex<Option<String>>>) -> Self {
        WritebackProbe { path, file, failure }
    }

    /// Writes back what the guest stored so far and reports an error the kernel met
    /// doing so (now or since the last check). A failure is remembered for good.
    pub fn check(&self) -> io::Result<()> {
        self.file.sync_data().inspect_err(|e| self.note_failure(&e.to_string()))
    }

    /// Remembers a write-back failure (the first one wins) for `close_clean`.
    pub fn note_failure(&self, message: &str) {
        let mut failure = self.failure.lock_unpoisoned();
        failure.get_or_insert_with(|| message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use crate::dimm::{Dimm, DimmError};
    use crate::{DimmPlacement, PlatformConfig};

    #[test]
    fn a_noted_failure_keeps_the_dimm_from_closing_clean() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::DimmConfig { size: 16 << 20, ..PlatformConfig::default_in(dir.path()).dimms[0].clone() };
        std::fs::File::create(&config.path).unwrap().set_len(16 << 20).unwrap();
        let placement = DimmPlacement { spa_base: 4 << 30, flush_hints: vec![] };
        let mut dimm = Dimm::open(config.clone(), placement.clone()).unwrap();
        let probe = dimm.writeback_probe().expect("a writable DIMM has a probe");
        probe.check().unwrap();
        probe.note_failure("No space left on device (os error 28)");
        let err = dimm.close_clean().unwrap_err();
        assert!(matches!(err, DimmError::BackingWrite { .. }), "{err}");
        assert!(err.to_string().contains("nvdimm0.img") && err.to_string().contains("No space"), "{err}");
        // The probe shares the DIMM's open file, and with it the lock.
        drop((dimm, probe));
        // Left marked running: the next start counts the loss as a dirty shutdown.
        let dimm = Dimm::open(config.clone(), placement.clone()).unwrap();
        assert_eq!(dimm.state.health.unsafe_shutdown_count, 1);
        drop(dimm);
        let readonly = crate::DimmConfig { readonly: true, ..config };
        assert!(Dimm::open(readonly, placement).unwrap().writeback_probe().is_none());
    }
}
