//! Helpers shared by the integration tests. The scenario support (SharedBuf, QEMU and
//! kernel checks) lives in the scenarios crate, which `vnvdimm test` uses too.

pub use vnvdimm_scenarios::{debian_612_kernel, require_qemu, FetchedKernel, SharedBuf};

pub mod kvm_host;
pub mod nested;
pub mod nested_watch;
pub mod tcg_guest;
