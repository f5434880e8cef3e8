//! Helpers shared by the integration tests.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A `Write` a test can read while a command writes to it on another thread
/// (e.g. `vnvdimm run`'s console output).
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock_unpoisoned().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    /// Everything written so far, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock_unpoisoned()).into_owned()
    }
}

/// Fails the calling test, saying what to install, when QEMU cannot run here: a TCG
/// test without QEMU is a failure, never a skip.
pub fn require_qemu() {
    let qemu = vnvdimm_tcg::qemu::QemuCommand::default_qemu();
    if let Err(e) = std::process::Command::new(&qemu).arg("--version").output() {
        panic!("{} is not runnable (apt-get install qemu-system-x86, or set VNV_QEMU): {e}", qemu.display());
    }
}

pub mod kvm_host;
pub mod nested;
