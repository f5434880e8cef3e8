//! `vnvdimm run --kernel K --modules DIR` under QEMU TCG with Debian 12's 6.12 kernel
//! (images/fetch-kernel.sh, cached under images/cache/kernels) booted from its
//! **bzImage**, as users pass `/boot/vmlinuz-*` (the scenario matrix boots the vmlinux
//! inside it, which skips the decompressor): the default image's userspace runs on it,
//! nfit/nd_pmem/libnvdimm come from the package's modules, ndctl sees both DIMMs and
//! regions, the kernel runs from RAM, and labelled namespaces of every mode enable and
//! survive a restart (the decompressor's KASLR once placed the kernel in a DIMM window).
//!
//! Needs qemu-system-x86_64, the guest image and the 6.12 package from apt; without
//! them the test fails saying which. Run:
//! `cargo test -p vnvdimm-integration --test modules_tcg -- --nocapture`.

use vnvdimm_scenarios as scenarios;

use scenarios::{Guest, GuestBackend, GuestKernel};

/// Debian 6.12's bzImage and its modules, with `vnvdimm run` as the binary runs it.
fn bzimage_guest() -> Guest {
    scenarios::set_runner(vnvdimm::cli::run_args);
    let k = scenarios::debian_612_kernel();
    let kernel = GuestKernel::Custom { vmlinux: k.dir.join("vmlinuz"), modules: Some(k.dir.clone()) };
    Guest { backend: GuestBackend::Tcg, kernel }
}

#[test]
fn debian_612_bzimage_boots_with_its_own_modules_and_sees_the_platform() {
    scenarios::s0_kernel_and_its_modules(bzimage_guest());
}

#[test]
fn debian_612_bzimage_namespaces_enable_and_survive_restart() {
    scenarios::s2_labels_1k_128k_1m_namespaces_survive_restart(bzimage_guest());
}
