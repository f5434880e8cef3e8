//! The same end-to-end scenarios (crates/scenarios/src/catalog.rs, docs/scenarios.md) under
//! KVM: `vnvdimm run --backend kvm`, the default image booted directly (PVH), the agent
//! on COM3.
//!
//! Each runs where Linux can run under KVM (`vnvdimm_integration::kvm_host`): directly on
//! a host with VMX/SVM, else inside the nested host (an L1 Linux under QEMU TCG with an
//! emulated SVM CPU, docs/nested-host.md), which every machine with QEMU has. Where
//! neither can run, each fails saying why; none is ignored.
//!
//! `cargo test -p vnvdimm-integration --test scenarios_kvm -- --nocapture`

use vnvdimm_scenarios as scenarios;
use scenarios::Guest;

use scenarios::GuestBackend::Kvm;
use vnvdimm_integration::kvm_linux_test;

/// The scenario with `vnvdimm run` as the binary runs it (in this process).
fn guest(g: impl Into<Guest>) -> Guest {
    scenarios::set_runner(vnvdimm::cli::run_args);
    g.into()
}

kvm_linux_test! {
    fn s1_ndctl_list_memory_controller() {
        scenarios::s1_ndctl_list_memory_controller(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s1_ndctl_list_cpu_cache() {
        scenarios::s1_ndctl_list_cpu_cache(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s3_scrub_finds_host_poison() {
        scenarios::s3_scrub_finds_host_poison(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s3_overflow_1000_ranges() {
        scenarios::s3_overflow_1000_ranges(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s4_guest_injection_matches_host_poison() {
        scenarios::s4_guest_injection_matches_host_poison(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s5_bad_block_read_is_eio_and_guest_survives() {
        scenarios::s5_bad_block_read_is_eio_and_guest_survives(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s7_health_from_host_and_inject_smart() {
        scenarios::s7_health_from_host_and_inject_smart(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s6_fsdax_data_survives_restart() {
        scenarios::s6_fsdax_data_survives_restart(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s2_labels_1k_128k_1m_namespaces_survive_restart() {
        scenarios::s2_labels_1k_128k_1m_namespaces_survive_restart(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s7_health_event_reaches_ndctl_monitor() {
        scenarios::s7_health_event_reaches_ndctl_monitor(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s8_machine_check_on_a_dax_mapped_page_is_recovered() {
        scenarios::s8_machine_check_on_a_dax_mapped_page_is_recovered(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s10_devdax_as_system_ram_and_back() {
        scenarios::s10_devdax_as_system_ram_and_back(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s11_interleave_4way_poison_in_each_dimm() {
        scenarios::s11_interleave_4way_poison_in_each_dimm(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s11_interleave_2way_namespace_survives_restart() {
        scenarios::s11_interleave_2way_namespace_survives_restart(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s12_security_passphrase_lock_erase_overwrite_freeze() {
        scenarios::s12_security_passphrase_lock_erase_overwrite_freeze(guest(Kvm));
    }
}

kvm_linux_test! {
    fn s13_firmware_update_and_activation() {
        scenarios::s13_firmware_update_and_activation(guest(Kvm));
    }
}
