//! `vnvdimm run --kernel K --modules DIR` under QEMU TCG with Debian 12's 6.12 kernel
//! (images/fetch-kernel.sh, cached under images/cache/kernels): the default image's
//! userspace runs on it, nfit/nd_pmem/libnvdimm come from the package's modules, and
//! ndctl (through the guest agent, as `vnvdimm ctl exec`) sees both DIMMs and regions.
//!
//! Needs qemu-system-x86_64, the guest image and the 6.12 package from apt; without
//! them the test fails saying which. Run:
//! `cargo test -p vnvdimm-integration --test modules_tcg -- --nocapture`.

// Only s0 is used here; the file shares the scenario harness with scenarios_tcg*.rs.
#[allow(dead_code)]
mod scenarios;

use scenarios::{Guest, GuestBackend, GuestKernel};

#[test]
fn debian_612_boots_with_its_own_modules_and_sees_the_platform() {
    scenarios::s0_kernel_and_its_modules(Guest { backend: GuestBackend::Tcg, kernel: GuestKernel::Debian612 });
}
