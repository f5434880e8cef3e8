//! The end-to-end scenarios (crates/scenarios/src/catalog.rs, docs/scenarios.md) under KVM
//! on Debian 12's 6.12 kernel: `vnvdimm run --backend kvm --kernel vmlinux --modules DIR`
//! with the kernel and modules unpacked by images/fetch-kernel.sh and the default
//! image's userspace; the 6.1 column is tests/scenarios_kvm.rs. Where 6.12 behaves
//! differently the scenario checks what each kernel does (docs/scenarios.md, "Kernels").
//!
//! Each runs where Linux can run under KVM: directly on a host with VMX/SVM, else inside
//! the nested host (docs/nested-host.md); where neither can, each fails saying why.
//! `cargo test -p vnvdimm-integration --test scenarios_kvm_612 -- --nocapture`

use vnvdimm_scenarios as scenarios;

use scenarios::{Guest, GuestBackend, GuestKernel};
use vnvdimm_integration::nested::NESTED_L1_ENV;

/// The scenario with `vnvdimm run` as the binary runs it (in this process).
fn guest(g: impl Into<Guest>) -> Guest {
    scenarios::set_runner(vnvdimm::cli::run_args);
    g.into()
}

const KVM_612: Guest = Guest { backend: GuestBackend::Kvm, kernel: GuestKernel::Debian612 };

/// Runs `scenario` under KVM on 6.12. The kernel is fetched here first: the nested host
/// sees this host's files read-only and could not fetch it itself.
fn kvm_612(name: &str, scenario: fn(Guest)) {
    if std::env::var_os(NESTED_L1_ENV).is_none() {
        vnvdimm_integration::debian_612_kernel();
    }
    vnvdimm_integration::kvm_host::kvm_linux_test(name, || scenario(guest(KVM_612)));
}

#[test]
fn s0_kernel_and_its_modules() {
    kvm_612("s0_kernel_and_its_modules", scenarios::s0_kernel_and_its_modules);
}

#[test]
fn s1_ndctl_list_memory_controller() {
    kvm_612("s1_ndctl_list_memory_controller", scenarios::s1_ndctl_list_memory_controller);
}

#[test]
fn s1_ndctl_list_cpu_cache() {
    kvm_612("s1_ndctl_list_cpu_cache", scenarios::s1_ndctl_list_cpu_cache);
}

#[test]
fn s3_scrub_finds_host_poison() {
    kvm_612("s3_scrub_finds_host_poison", scenarios::s3_scrub_finds_host_poison);
}

#[test]
fn s3_overflow_1000_ranges() {
    kvm_612("s3_overflow_1000_ranges", scenarios::s3_overflow_1000_ranges);
}

#[test]
fn s4_guest_injection_matches_host_poison() {
    kvm_612("s4_guest_injection_matches_host_poison", scenarios::s4_guest_injection_matches_host_poison);
}

#[test]
fn s5_bad_block_read_is_eio_and_guest_survives() {
    kvm_612("s5_bad_block_read_is_eio_and_guest_survives", scenarios::s5_bad_block_read_is_eio_and_guest_survives);
}

#[test]
fn s7_health_from_host_and_inject_smart() {
    kvm_612("s7_health_from_host_and_inject_smart", scenarios::s7_health_from_host_and_inject_smart);
}

#[test]
fn s6_fsdax_data_survives_restart() {
    kvm_612("s6_fsdax_data_survives_restart", scenarios::s6_fsdax_data_survives_restart);
}

#[test]
fn s2_labels_1k_128k_1m_namespaces_survive_restart() {
    kvm_612("s2_labels_1k_128k_1m_namespaces_survive_restart", scenarios::s2_labels_1k_128k_1m_namespaces_survive_restart);
}

#[test]
fn s7_health_event_reaches_ndctl_monitor() {
    kvm_612("s7_health_event_reaches_ndctl_monitor", scenarios::s7_health_event_reaches_ndctl_monitor);
}

#[test]
fn s8_machine_check_on_a_dax_mapped_page_is_recovered() {
    kvm_612("s8_machine_check_on_a_dax_mapped_page_is_recovered", scenarios::s8_machine_check_on_a_dax_mapped_page_is_recovered);
}

#[test]
fn s10_devdax_as_system_ram_and_back() {
    kvm_612("s10_devdax_as_system_ram_and_back", scenarios::s10_devdax_as_system_ram_and_back);
}
