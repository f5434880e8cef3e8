//! vnvdimm's KVM VMM core: turns a `vnvdimm_machine::Machine` into a running
//! KVM VM whose NVDIMM windows are the users' backing files, and serves the
//! guest's port and MMIO exits (serial console, `_DSM` doorbell, flush hints,
//! power off).

pub mod arch;
pub mod backend;
pub mod devices;
pub mod kvm_check;
pub mod launch;
pub mod memory;
pub mod outcome;
#[cfg(test)]
mod test_rig;
pub mod vcpu;
pub mod vm;

pub use outcome::GuestOutcome;
pub use vm::{Vm, VmBuilder, VmError, VmStats};

// The host I/O loop and its signal source are backend-neutral (both backends run one).
pub use vnvdimm_control::{host_io, signal_source};
