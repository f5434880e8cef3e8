//! Generic Event Device (ACPI0013): how the VMM tells the guest's ACPI that something
//! happened. The VMM sets a bit in a pending-event register and raises the GED's
//! interrupt; Linux's evged driver runs `_EVT`, which reads the register (reading
//! clears it) and, for the NVDIMM bit, calls `\_SB.NVDR.NEVT()`, which turns the
//! mailbox's notification counters into Notify(root, 0x80/0x81) and Notify(DIMM, 0x81).
//!
//! How the VMM uses it:
//! ```ignore
//! let ged = Arc::new(Ged::new());
//! // DSDT: the machine's DSDT already has Device(\_SB.GED0) (vnvdimm_machine::acpi::ged)
//! // MMIO bus: GED_MMIO_BASE..+GED_MMIO_SIZE -> ged.mmio_read(offset, data) / ged.mmio_write(..)
//! // Interrupt (with KVM_CREATE_IRQCHIP): let line = KvmIrqLine::new(&vm_fd, GED_GSI);
//! //   or an irqfd: let line = IrqFd::new(eventfd) after vm_fd.register_irqfd(&eventfd, GED_GSI).
//! // After the device model queued notifications (platform.take_notifications() non-empty
//! // and written to the mailbox words):
//! ged.raise(GED_EVENT_NVDIMM, &line)?;
//! ```
//! On the project's KVM hosts without VMX/SVM no interrupt reaches a long-mode guest
//! (no interrupt delivery, see docs/poison-consumption.md), so the raise path is
//! implemented and unit-tested, and exercised end to end only on hosts that boot Linux.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

// The register page, GSI, event bits and AML are the machine's (the DSDT carries the
// device); this module is the device behind them.
pub use vnvdimm_machine::acpi::ged::{GedConfig, GED_EVENTS_KNOWN, GED_EVENT_NVDIMM, GED_GSI, GED_MMIO_SIZE};
/// The GED register page in the machine's memory map (MMIO: every access exits).
pub const GED_MMIO_BASE: u64 = vnvdimm_machine::memory_map::GED_MMIO_ADDR;

/// An interrupt line to the guest. Edge semantics: one call, one interrupt.
pub trait IrqLine {
    fn trigger(&self) -> io::Result<()>;
}

/// KVM_IRQ_LINE on the in-kernel IO APIC: assert, then deassert (an edge).
pub struct KvmIrqLine<'a> {
    vm: &'a VmFd,
    gsi: u32,
}

impl<'a> KvmIrqLine<'a> {
    pub fn new(vm: &'a VmFd, gsi: u32) -> Self {
        KvmIrqLine { vm, gsi }
    }
}

impl IrqLine for KvmIrqLine<'_> {
    fn trigger(&self) -> io::Result<()> {
        self.vm
            .set_irq_line(self.gsi, true)
            .map_err(io::Error::from)?;
        self.vm
            .set_irq_line(self.gsi, false)
            .map_err(io::Error::from)
    }
}

/// An eventfd registered with KVM_IRQFD for the GED's GSI.
pub struct IrqFd(pub EventFd);

impl IrqLine for IrqFd {
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// The device: shared between the vCPU threads (MMIO reads) and the VMM's control side.
#[derive(Debug, Default)]
pub struct Ged {
    pending: AtomicU32,
}

impl Ged {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `events` pending and raises the interrupt. Bits already pending are kept:
    /// `_EVT` will see them all in one read.
    pub fn raise(&self, events: u32, line: &dyn IrqLine) -> io::Result<()> {
        self.pending
            .fetch_or(events & GED_EVENTS_KNOWN, Ordering::SeqCst);
        line.trigger()
    }

    /// Pending bits without clearing them (for the control API and tests).
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::SeqCst)
    }

    /// A guest load at `offset` into the register page. The 32-bit register at offset 0
    /// returns the pending bits and clears them (one `_EVT` run consumes them); anything
    /// else reads as zero.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset != 0 || data.is_empty() {
            return;
        }
        let value = self.pending.swap(0, Ordering::SeqCst).to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&value[..n]);
        // A narrower read would lose the bits it did not return: put them back.
        if n < 4 {
            let rest = u32::from_le_bytes(value) & !(u32::MAX >> (8 * (4 - n)));
            self.pending.fetch_or(rest, Ordering::SeqCst);
        }
    }

    /// The register is read-only; stores are ignored.
    pub fn mmio_write(&self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests;
