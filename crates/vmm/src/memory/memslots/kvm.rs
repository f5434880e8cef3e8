//! `SlotSink` over a KVM VM: memslot numbers from a range the VMM reserves for the
//! NVDIMM windows, recycled as regions come and go.

use std::collections::HashMap;
use std::io;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;

use super::{SlotRegion, SlotSink};

/// Slot numbers of the NVDIMM windows' regions. Lives as long as the VM.
#[derive(Debug)]
pub struct KvmSlots {
    next: u32,
    end: u32,
    free: Vec<u32>,
    by_gpa: HashMap<u64, u32>,
}

impl KvmSlots {
    /// Uses slot numbers `first..end` (end: KVM_CAP_NR_MEMSLOTS).
    pub fn new(first: u32, end: u32) -> Self {
        KvmSlots {
            next: first,
            end,
            free: Vec::new(),
            by_gpa: HashMap::new(),
        }
    }

    /// Slots in use.
    pub fn len(&self) -> usize {
        self.by_gpa.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_gpa.is_empty()
    }

    pub fn bind<'a>(&'a mut self, vm: &'a VmFd) -> KvmSink<'a> {
        KvmSink { slots: self, vm }
    }
}

pub struct KvmSink<'a> {
    slots: &'a mut KvmSlots,
    vm: &'a VmFd,
}

impl KvmSink<'_> {
    fn set(&self, slot: u32, region: &SlotRegion, size: u64) -> io::Result<()> {
        let flags = if region.readonly { KVM_MEM_READONLY } else { 0 };
        let mem = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: region.gpa,
            memory_size: size,
            userspace_addr: region.host_addr,
        };
        // SAFETY: the host range lies in a DIMM window whose mapping the DimmWindow::new
        // contract keeps alive while the region is installed; size 0 deletes the slot.
        unsafe { self.vm.set_user_memory_region(mem) }.map_err(io::Error::from)
    }
}

impl SlotSink for KvmSink<'_> {
    fn add(&mut self, region: &SlotRegion) -> io::Result<()> {
        let slot = match self.slots.free.pop() {
            Some(slot) => slot,
            None if self.slots.next < self.slots.end => {
                self.slots.next += 1;
                self.slots.next - 1
            }
            None => {
                return Err(io::Error::other(
                    "no free KVM memory slot number left for the NVDIMM windows",
                ))
            }
        };
        if let Err(e) = self.set(slot, region, region.size) {
            self.slots.free.push(slot);
            return Err(e);
        }
        self.slots.by_gpa.insert(region.gpa, slot);
        Ok(())
    }

    fn remove(&mut self, region: &SlotRegion) -> io::Result<()> {
        let slot = *self.slots.by_gpa.get(&region.gpa).ok_or_else(|| {
            io::Error::other(format!("no KVM slot holds the region at {:#x}", region.gpa))
        })?;
        self.set(slot, region, 0)?;
        self.slots.by_gpa.remove(&region.gpa);
        self.slots.free.push(slot);
        Ok(())
    }
}
