//! The rows only the KVM backend has, under a real Linux (crates/scenarios/src/catalog/kvm_only.rs):
//! poison consumed through fs-dax and device-dax mappings, action-optional machine
//! checks, flush hints and fsync, GED notifications, two vCPUs, a panic without pvpanic.
//!
//! Each runs where Linux can run under KVM (`vnvdimm_integration::kvm_host`): directly on
//! a host with VMX/SVM, else inside the nested host (docs/nested-host.md). None is
//! ignored; where neither host exists each fails saying why.

use vnvdimm_scenarios::kvm_only;
use vnvdimm_integration::kvm_linux_test;

kvm_linux_test! {
    fn poison_consumed_through_an_fsdax_mapping_is_recovered() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::poison_consumed_through_an_fsdax_mapping_is_recovered();
    }
}

kvm_linux_test! {
    fn poison_consumed_on_an_interleave_set_is_recovered() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::poison_consumed_on_an_interleave_set_is_recovered();
    }
}

kvm_linux_test! {
    fn poison_consumed_through_a_devdax_mapping_is_recovered() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::poison_consumed_through_a_devdax_mapping_is_recovered();
    }
}

kvm_linux_test! {
    fn action_optional_machine_check_reaches_memory_failure() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::action_optional_machine_check_reaches_memory_failure();
    }
}

kvm_linux_test! {
    fn flush_hints_and_fsync_reach_the_backing_file() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::flush_hints_and_fsync_reach_the_backing_file();
    }
}

kvm_linux_test! {
    fn notification_through_the_ged_updates_badblocks_without_a_scrub() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::notification_through_the_ged_updates_badblocks_without_a_scrub();
    }
}

kvm_linux_test! {
    fn two_vcpus_boot_and_run() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::two_vcpus_boot_and_run();
    }
}

kvm_linux_test! {
    fn panic_without_pvpanic_ends_the_run() {
        vnvdimm_scenarios::set_runner(vnvdimm::cli::run_args);
        kvm_only::panic_without_pvpanic_ends_the_run();
    }
}
