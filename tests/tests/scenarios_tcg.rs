//! The end-to-end scenarios (crates/scenarios/src/catalog.rs, docs/scenarios.md) under QEMU
//! TCG: real Debian kernel, real ndctl, on every machine.
//!
//! Needs qemu-system-x86_64 and the guest image (images/build-guest.sh); their absence is
//! a failure. Run: `cargo test -p vnvdimm-integration --test scenarios_tcg -- --nocapture`
//! (each scenario also prints its guest session). VNV_KEEP_WORK=1 keeps the work dirs.

use vnvdimm_scenarios as scenarios;
use scenarios::Guest;

use scenarios::GuestBackend::Tcg;

/// The scenario with `vnvdimm run` as the binary runs it (in this process).
fn guest(g: impl Into<Guest>) -> Guest {
    scenarios::set_runner(vnvdimm::cli::run_args);
    g.into()
}

#[test]
fn s1_ndctl_list_memory_controller() {
    scenarios::s1_ndctl_list_memory_controller(guest(Tcg));
}

#[test]
fn s1_ndctl_list_cpu_cache() {
    scenarios::s1_ndctl_list_cpu_cache(guest(Tcg));
}

#[test]
fn s3_scrub_finds_host_poison() {
    scenarios::s3_scrub_finds_host_poison(guest(Tcg));
}

#[test]
fn s3_overflow_1000_ranges() {
    scenarios::s3_overflow_1000_ranges(guest(Tcg));
}

#[test]
fn s4_guest_injection_matches_host_poison() {
    scenarios::s4_guest_injection_matches_host_poison(guest(Tcg));
}

#[test]
fn s5_bad_block_read_is_eio_and_guest_survives() {
    scenarios::s5_bad_block_read_is_eio_and_guest_survives(guest(Tcg));
}

#[test]
fn s7_health_from_host_and_inject_smart() {
    scenarios::s7_health_from_host_and_inject_smart(guest(Tcg));
}

#[test]
fn s6_fsdax_data_survives_restart() {
    scenarios::s6_fsdax_data_survives_restart(guest(Tcg));
}

#[test]
fn s2_labels_1k_128k_1m_namespaces_survive_restart() {
    scenarios::s2_labels_1k_128k_1m_namespaces_survive_restart(guest(Tcg));
}

#[test]
fn s7_health_event_reaches_ndctl_monitor() {
    scenarios::s7_health_event_reaches_ndctl_monitor(guest(Tcg));
}

#[test]
fn s8_machine_check_on_a_dax_mapped_page_is_recovered() {
    scenarios::s8_machine_check_on_a_dax_mapped_page_is_recovered(guest(Tcg));
}

#[test]
fn s10_devdax_as_system_ram_and_back() {
    scenarios::s10_devdax_as_system_ram_and_back(guest(Tcg));
}

#[test]
fn s11_interleave_4way_poison_in_each_dimm() {
    scenarios::s11_interleave_4way_poison_in_each_dimm(guest(Tcg));
}

#[test]
fn s11_interleave_2way_namespace_survives_restart() {
    scenarios::s11_interleave_2way_namespace_survives_restart(guest(Tcg));
}

#[test]
fn s12_security_passphrase_lock_erase_overwrite_freeze() {
    scenarios::s12_security_passphrase_lock_erase_overwrite_freeze(guest(Tcg));
}

#[test]
fn s13_firmware_update_and_activation() {
    scenarios::s13_firmware_update_and_activation(guest(Tcg));
}
