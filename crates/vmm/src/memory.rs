//! Guest memory: RAM and windows through vm-memory, the memslot plan for the NVDIMM
//! windows (poisoned pages left out) and its KVM side.

pub mod guest_memory;
pub mod memslots;
pub mod pmem_slots;
