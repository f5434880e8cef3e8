//! The end-to-end scenarios: each boots a real kernel with the default image's userspace
//! under `vnvdimm run --api-socket`, injects faults through the control API and checks
//! what the guest's own ndctl, daxctl and file systems see (docs/scenarios.md). One copy
//! serves `vnvdimm test` (the product, for users' CI) and the project's test files.
//!
//! A scenario fails by panicking with the evidence (the guest session, the API calls,
//! the console tail); a missing backend or kernel is a failure too, never a skip.

mod catalog;
mod registry;
mod support;

pub use catalog::*;
pub use registry::{find, Scenario, SCENARIOS};
pub use support::{debian_612_kernel, require_qemu, set_runner, FetchedKernel, RunVnvdimm, SharedBuf};
