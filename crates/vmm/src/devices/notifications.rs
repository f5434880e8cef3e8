//! Delivering the device model's ACPI notifications (Notify 0x81 on the root or a DIMM,
//! docs/dsm-transport.md) to a KVM guest: each pending one increments its "raised"
//! counter in the mailbox, then the GED's NVDIMM bit is set and GSI 5 pulsed, so the
//! guest's GED handler runs `\_SB.NVDR.NEVT`, which notifies for every counter that moved.
//!
//! Two places queue notifications: the control API (host poison, health) and the guest's
//! own `_DSM` calls (e.g. an ACPI 6.2 error injection with its notify flag, which Linux
//! answers with a scrub). The API delivers after each request; the run loop after each
//! doorbell ring.


use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use nvdimm_model::event_log::EventKind;
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;

use crate::devices::ged::{Ged, KvmIrqLine, GED_EVENT_NVDIMM, GED_GSI};
use crate::memory::guest_memory::GuestMemory;
use crate::vm::Vm;

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("cannot post notification {0}: the mailbox at {1:#x} is not in guest RAM")]
    MailboxOutsideRam(String, u64),
}

/// What delivering needs of a VM; cheap to clone (shared handles).
#[derive(Clone)]
pub struct NotificationPath {
    memory: Arc<GuestMemory>,
    mailbox: u64,
    ged: Arc<Ged>,
    vm_fd: Arc<VmFd>,
}

impl NotificationPath {
    pub fn of(vm: &Vm) -> Self {
        NotificationPath {
            memory: vm.memory.clone(),
            mailbox: vm.machine.memory_map.layout.mailbox,
            ged: vm.ged.clone(),
            vm_fd: vm.vm_fd.clone(),
        }
    }

    /// Posts and logs every pending notification and raises the GED once; nothing to
    /// do (and no interrupt) when none is pending. Where KVM refused the irqchip there is
    /// no line to pulse: the counters and the GED bit stay set for the guest to find.
    pub fn deliver(&self, platform: &Mutex<NvdimmPlatform>) -> Result<usize, NotifyError> {
        let mut platform = platform.lock_unpoisoned();
        let pending = platform.take_notifications();
        if pending.is_empty() {
            return Ok(0);
        }
        for n in &pending {
            let posted = platform.notify_counter(n).is_some_and(|c| self.increment_mailbox_word(c.raised));
            if !posted {
                return Err(NotifyError::MailboxOutsideRam(format!("{n:?}"), self.mailbox));
            }
            platform.log_event(EventKind::Notify(*n));
        }
        drop(platform);
        if let Err(e) = self.ged.raise(GED_EVENT_NVDIMM, &KvmIrqLine::new(&self.vm_fd, GED_GSI)) {
            log::debug!("GED interrupt not raised ({e}): is there an in-kernel interrupt controller? the bits stay pending");
        }
        Ok(pending.len())
    }

    /// Increments the mailbox word at `offset` (a notification's "raised" counter).
    fn increment_mailbox_word(&self, offset: usize) -> bool {
        // Only the host writes a raised counter; the guest writes the seen ones.
        self.memory.mailbox(self.mailbox).is_some_and(|m| m.increment_u32(offset))
    }
}
