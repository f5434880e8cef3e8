//! vnvdimm's KVM VMM core: turns a `vnvdimm_machine::Machine` into a running
//! KVM VM whose NVDIMM windows are the users' backing files, and serves the
//! guest's port and MMIO exits (serial console, `_DSM` doorbell, flush hints,
//! power off).


pub mod agent_port;
pub mod backend;
pub mod bare_metal;
pub mod buffered_uart;
pub mod bus;
pub mod command_port;
pub mod console_escape;
pub mod cpuid;
pub mod debug_port;
pub mod doorbell;
pub mod e820;
pub mod firmware;
pub mod flush_hint;
pub mod ged;
pub mod guest_memory;
pub mod harness;
pub mod host_io;
pub mod kvm_check;
pub mod launch;
pub mod linux_boot;
pub mod mce;
pub mod long_mode;
pub mod memslots;
pub mod notifications;
pub mod outcome;
pub mod page_tables;
pub mod pmem_slots;
pub mod power;
pub mod pvpanic;
pub mod run_loop;
pub mod selftest;
#[cfg(test)]
mod test_rig;
pub mod serial;
pub mod uart_feed;
pub mod vcpu_control;
pub mod vm;

pub use outcome::GuestOutcome;
pub use vm::{Vm, VmError, VmStats};
