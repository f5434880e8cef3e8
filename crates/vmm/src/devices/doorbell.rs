//! The `_DSM` doorbell page. The AML (and the bare-metal DSM program) fills the
//! mailbox in guest RAM and stores a sequence number to the doorbell word; the
//! store exits to the VMM, which serves the call before the vCPU resumes, so the
//! guest's first completion check already sees the answer.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nvdimm_model::NvdimmPlatform;

use crate::devices::bus::{Action, BusDevice};
use crate::memory::guest_memory::GuestMemory;

pub struct Doorbell {
    platform: Arc<Mutex<NvdimmPlatform>>,
    memory: Arc<GuestMemory>,
    mailbox: u64,
    rings: Arc<AtomicU64>,
}

impl Doorbell {
    pub fn new(
        platform: Arc<Mutex<NvdimmPlatform>>,
        memory: Arc<GuestMemory>,
        rings: Arc<AtomicU64>,
    ) -> Self {
        let mailbox = platform
            .lock_unpoisoned()
            .layout()
            .mailbox;
        Doorbell {
            platform,
            memory,
            mailbox,
            rings,
        }
    }
}

impl BusDevice for Doorbell {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        let &[a, b, c, d] = data else {
            log::debug!(
                "doorbell: ignored {}-byte write (the doorbell is a 32-bit word)",
                data.len()
            );
            return Action::Continue;
        };
        if offset != 0 {
            log::debug!("doorbell: ignored write at offset {offset:#x}");
            return Action::Continue;
        }
        let sequence = u32::from_le_bytes([a, b, c, d]);
        let Some(mut mailbox) = self.memory.mailbox(self.mailbox) else {
            log::debug!("doorbell: the mailbox at {:#x} is not inside one RAM block", self.mailbox);
            return Action::Continue;
        };
        self.platform
            .lock_unpoisoned()
            .serve_mailbox(&mut mailbox, sequence);
        self.rings.fetch_add(1, Ordering::Relaxed);
        Action::DsmServed
    }
}

#[cfg(test)]
mod tests;
