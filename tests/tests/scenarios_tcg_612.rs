//! The end-to-end scenarios (crates/scenarios/src/catalog.rs, docs/scenarios.md) under QEMU
//! TCG on Debian 12's 6.12 kernel: `vnvdimm run --kernel vmlinux --modules DIR` with the
//! kernel and modules unpacked by images/fetch-kernel.sh, the default image's userspace.
//! Where 6.12 behaves differently from 6.1 the scenario checks what each kernel does
//! (docs/scenarios.md, "Kernels").
//!
//! Needs qemu-system-x86_64, the guest image and the 6.12 package from apt; their absence
//! is a failure. Run: `cargo test -p vnvdimm-integration --test scenarios_tcg_612 --
//! --nocapture`. VNV_KEEP_WORK=1 keeps the work dirs.

use vnvdimm_scenarios as scenarios;

use scenarios::{Guest, GuestBackend, GuestKernel};

/// The scenario with `vnvdimm run` as the binary runs it (in this process).
fn guest(g: impl Into<Guest>) -> Guest {
    scenarios::set_runner(vnvdimm::cli::run_args);
    g.into()
}

const TCG_612: Guest = Guest { backend: GuestBackend::Tcg, kernel: GuestKernel::Debian612 };

#[test]
fn s0_kernel_and_its_modules() {
    scenarios::s0_kernel_and_its_modules(guest(TCG_612));
}

#[test]
fn s1_ndctl_list_memory_controller() {
    scenarios::s1_ndctl_list_memory_controller(guest(TCG_612));
}

#[test]
fn s1_ndctl_list_cpu_cache() {
    scenarios::s1_ndctl_list_cpu_cache(guest(TCG_612));
}

#[test]
fn s3_scrub_finds_host_poison() {
    scenarios::s3_scrub_finds_host_poison(guest(TCG_612));
}

#[test]
fn s3_overflow_1000_ranges() {
    scenarios::s3_overflow_1000_ranges(guest(TCG_612));
}

#[test]
fn s4_guest_injection_matches_host_poison() {
    scenarios::s4_guest_injection_matches_host_poison(guest(TCG_612));
}

#[test]
fn s5_bad_block_read_is_eio_and_guest_survives() {
    scenarios::s5_bad_block_read_is_eio_and_guest_survives(guest(TCG_612));
}

#[test]
fn s7_health_from_host_and_inject_smart() {
    scenarios::s7_health_from_host_and_inject_smart(guest(TCG_612));
}

#[test]
fn s6_fsdax_data_survives_restart() {
    scenarios::s6_fsdax_data_survives_restart(guest(TCG_612));
}

#[test]
fn s2_labels_1k_128k_1m_namespaces_survive_restart() {
    scenarios::s2_labels_1k_128k_1m_namespaces_survive_restart(guest(TCG_612));
}

#[test]
fn s7_health_event_reaches_ndctl_monitor() {
    scenarios::s7_health_event_reaches_ndctl_monitor(guest(TCG_612));
}

#[test]
fn s8_machine_check_on_a_dax_mapped_page_is_recovered() {
    scenarios::s8_machine_check_on_a_dax_mapped_page_is_recovered(guest(TCG_612));
}

#[test]
fn s10_devdax_as_system_ram_and_back() {
    scenarios::s10_devdax_as_system_ram_and_back(guest(TCG_612));
}
