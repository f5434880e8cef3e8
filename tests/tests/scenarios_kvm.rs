//! The same end-to-end scenarios (tests/tests/scenarios/mod.rs, docs/scenarios.md) under
//! KVM: `vnvdimm run --backend kvm`, the default image booted directly (PVH), the agent
//! on COM3.
//!
//! They need a host whose KVM can boot Linux (VMX or SVM). The project's build machines
//! cannot (kvm_pvm without VMX/SVM cannot deliver int3; docs/selftest.md), so every test
//! here is `#[ignore]`d with that reason and shows up as "ignored", never as passed. Forced
//! with `--ignored` on such a host, each prints "NOT RUN under KVM: <the capability
//! check's reason>" and fails. `kvm_linux::capability_verdict_matches_the_host` (always
//! on) notices a host where they could run.
//!
//! Run where KVM works:
//! `cargo test -p vnvdimm-integration --test scenarios_kvm -- --ignored --test-threads=1 --nocapture`

mod scenarios;

use scenarios::GuestBackend::Kvm;

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s1_ndctl_list_memory_controller() {
    scenarios::s1_ndctl_list_memory_controller(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s1_ndctl_list_cpu_cache() {
    scenarios::s1_ndctl_list_cpu_cache(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s3_scrub_finds_host_poison() {
    scenarios::s3_scrub_finds_host_poison(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s3_overflow_1000_ranges() {
    scenarios::s3_overflow_1000_ranges(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s4_guest_injection_matches_host_poison() {
    scenarios::s4_guest_injection_matches_host_poison(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s5_bad_block_read_is_eio_and_guest_survives() {
    scenarios::s5_bad_block_read_is_eio_and_guest_survives(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s7_health_from_host_and_inject_smart() {
    scenarios::s7_health_from_host_and_inject_smart(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s6_fsdax_data_survives_restart() {
    scenarios::s6_fsdax_data_survives_restart(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s2_labels_1k_128k_1m_namespaces_survive_restart() {
    scenarios::s2_labels_1k_128k_1m_namespaces_survive_restart(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s7_health_event_reaches_ndctl_monitor() {
    scenarios::s7_health_event_reaches_ndctl_monitor(Kvm);
}

#[test]
#[ignore = "needs a host whose KVM can boot Linux (VMX/SVM); run with --ignored there"]
fn s8_machine_check_on_a_dax_mapped_page_is_recovered() {
    scenarios::s8_machine_check_on_a_dax_mapped_page_is_recovered(Kvm);
}
