//! `vnvdimm run --kernel K --modules DIR` under QEMU TCG with Debian 12's 6.12 kernel
//! (images/fetch-kernel.sh, cached under images/cache/kernels): the default image's
//! userspace runs on it, nfit/nd_pmem/libnvdimm come from the package's modules, and
//! ndctl (through the guest agent, as `vnvdimm ctl exec`) sees both DIMMs and regions.
//!
//! Needs qemu-system-x86_64, the guest image and the 6.12 package from apt; without
//! them the test fails saying which. Run:
//! `cargo test -p vnvdimm-integration --test modules_tcg -- --nocapture`.

use vnvdimm_scenarios as scenarios;

use scenarios::{Guest, GuestBackend, GuestKernel};

/// The scenario with `vnvdimm run` as the binary runs it (in this process).
fn guest(g: impl Into<Guest>) -> Guest {
    scenarios::set_runner(vnvdimm::cli::run_args);
    g.into()
}

#[test]
fn debian_612_boots_with_its_own_modules_and_sees_the_platform() {
    scenarios::s0_kernel_and_its_modules(guest(Guest { backend: GuestBackend::Tcg, kernel: GuestKernel::Debian612 }));
}
