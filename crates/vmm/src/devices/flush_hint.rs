//! Flush hint pages. A store to any of a DIMM's hint pages makes everything the
//! guest wrote to that DIMM durable (fdatasync of the backing file) before the
//! vCPU continues, which is what the guest's flush hint write means on hardware.

use nvdimm_model::sync::LockUnpoisoned;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nvdimm_model::event_log::EventKind;
use nvdimm_model::NvdimmPlatform;

use crate::devices::bus::{Action, BusDevice};
use crate::memory::guest_memory::GuestMemory;

/// Flushes per DIMM, in configuration order.
#[derive(Debug)]
pub struct FlushCounters(Vec<AtomicU64>);

impl FlushCounters {
    pub fn new(dimms: usize) -> Self {
        FlushCounters((0..dimms).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn get(&self, dimm: usize) -> u64 {
        self.0.get(dimm).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn all(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    fn bump(&self, dimm: usize) {
        if let Some(c) = self.0.get(dimm) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct FlushHint {
    dimm: usize,
    handle: u32,
    /// The DIMM's window in `memory.pmem`, found once here rather than on every flush;
    /// None when there is nothing to flush (no such window, or read-only).
    window: Option<usize>,
    memory: Arc<GuestMemory>,
    platform: Arc<Mutex<NvdimmPlatform>>,
    counters: Arc<FlushCounters>,
}

impl FlushHint {
    pub fn new(
        dimm: usize,
        memory: Arc<GuestMemory>,
        platform: Arc<Mutex<NvdimmPlatform>>,
        counters: Arc<FlushCounters>,
    ) -> Self {
        let handle = platform
            .lock_unpoisoned()
            .config()
            .dimms
            .get(dimm)
            .map_or(0, |d| d.handle);
        let window = memory.pmem.iter().position(|w| w.dimm == dimm && !w.readonly);
        FlushHint {
            dimm,
            handle,
            window,
            memory,
            platform,
            counters,
        }
    }
}

/// Makes the window's stores durable. A read-only window has nothing to flush.
pub fn flush_window(memory: &GuestMemory, dimm: usize) -> std::io::Result<()> {
    match memory.pmem.iter().find(|w| w.dimm == dimm) {
        Some(window) if !window.readonly => fdatasync(&window.file),
        _ => Ok(()),
    }
}

/// One fdatasync on the descriptor the window was mapped from: the guest's stores
/// went through that shared mapping, so they are this file's dirty pages.
fn fdatasync(file: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: fdatasync on a file descriptor the window owns for its whole life.
    if unsafe { libc::fdatasync(file.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl BusDevice for FlushHint {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> Action {
        // Any store of any width is a flush request, as on hardware. Beyond the
        // fdatasync the path is a relaxed counter add and one uncontended lock to log
        // the event (the log's ring only grows, amortized): vmm_bench measures it at
        // under a microsecond, against several for the exit itself.
        let result = match self.window.and_then(|i| self.memory.pmem.get(i)) {
            Some(window) => fdatasync(&window.file),
            None => Ok(()),
        };
        if let Err(e) = result {
            // The guest cannot be told; the host operator must be.
            vnvdimm_host_log::warn_limited!("flush of nvdimm #{} failed: {e}; its data may not be durable", self.dimm);
        }
        self.counters.bump(self.dimm);
        self.platform
            .lock_unpoisoned()
            .log_event(EventKind::Flush {
                dimm: self.dimm,
                handle: self.handle,
            });
        Action::Continue
    }
}

#[cfg(test)]
mod tests;
