//! The scenarios by name, in the order `vnvdimm test --list` shows them.

use crate::catalog::{self, Guest};

pub struct Scenario {
    /// What the user filters on and what reports show; the same as the project's test names.
    pub name: &'static str,
    /// One line on what it proves.
    pub summary: &'static str,
    pub run: fn(Guest),
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "s0_kernel_and_its_modules",
        summary: "the kernel boots with its own modules; nfit, nd_pmem, libnvdimm load; ndctl sees both DIMMs",
        run: |g| catalog::s0_kernel_and_its_modules(g),
    },
    Scenario {
        name: "s1_ndctl_list_memory_controller",
        summary: "ndctl list -BDRNH on a memory_controller platform: bus, DIMMs, regions, namespaces, flags",
        run: |g| catalog::s1_ndctl_list_memory_controller(g),
    },
    Scenario {
        name: "s1_ndctl_list_cpu_cache",
        summary: "the same on a cpu_cache platform (persistence domain reported as such)",
        run: |g| catalog::s1_ndctl_list_cpu_cache(g),
    },
    Scenario {
        name: "s2_labels_1k_128k_1m_namespaces_survive_restart",
        summary: "namespaces on 1 KiB, 128 KiB and 1 MiB label areas survive a VM restart",
        run: |g| catalog::s2_labels_1k_128k_1m_namespaces_survive_restart(g),
    },
    Scenario {
        name: "s3_scrub_finds_host_poison",
        summary: "poison added from the host is found by the guest's Address Range Scrub",
        run: |g| catalog::s3_scrub_finds_host_poison(g),
    },
    Scenario {
        name: "s3_overflow_1000_ranges",
        summary: "1000 poison ranges: Query ARS Status continuation and overflow as Linux drives them",
        run: |g| catalog::s3_overflow_1000_ranges(g),
    },
    Scenario {
        name: "s4_guest_injection_matches_host_poison",
        summary: "ACPI 6.2 error injection from the guest shows in the host's poison list and back",
        run: |g| catalog::s4_guest_injection_matches_host_poison(g),
    },
    Scenario {
        name: "s5_bad_block_read_is_eio_and_guest_survives",
        summary: "reading a bad block through the pmem block device is EIO and the guest lives on",
        run: |g| catalog::s5_bad_block_read_is_eio_and_guest_survives(g),
    },
    Scenario {
        name: "s6_fsdax_data_survives_restart",
        summary: "data written on an fs-dax ext4 mount is in the backing file after a restart",
        run: |g| catalog::s6_fsdax_data_survives_restart(g),
    },
    Scenario {
        name: "s7_health_from_host_and_inject_smart",
        summary: "SMART health set from the host and injected by the guest, as ndctl reports it",
        run: |g| catalog::s7_health_from_host_and_inject_smart(g),
    },
    Scenario {
        name: "s7_health_event_reaches_ndctl_monitor",
        summary: "a host health event wakes `ndctl monitor` in the guest",
        run: |g| catalog::s7_health_event_reaches_ndctl_monitor(g),
    },
    Scenario {
        name: "s8_machine_check_on_a_dax_mapped_page_is_recovered",
        summary: "a machine check on a dax-mapped page is recovered: SIGBUS to the reader, the guest lives on",
        run: |g| catalog::s8_machine_check_on_a_dax_mapped_page_is_recovered(g),
    },
    Scenario {
        name: "s10_devdax_as_system_ram_and_back",
        summary: "a devdax namespace onlined as system RAM in its own NUMA node, used, and returned",
        run: |g| catalog::s10_devdax_as_system_ram_and_back(g),
    },
    Scenario {
        name: "s11_interleave_4way_poison_in_each_dimm",
        summary: "a 4-way interleave set beside a DIMM: host poison in every member is found by scrub at the interleaved sectors",
        run: |g| catalog::s11_interleave_4way_poison_in_each_dimm(g),
    },
    Scenario {
        name: "s11_interleave_2way_namespace_survives_restart",
        summary: "an fsdax namespace across a 2-way interleave set keeps its labels, cookie and data across a restart",
        run: |g| catalog::s11_interleave_2way_namespace_survives_restart(g),
    },
    Scenario {
        name: "s12_security_passphrase_lock_erase_overwrite_freeze",
        summary: "ndctl's passphrase flow: the DIMM boots locked, unlocks with the loaded keys; crypto erase, overwrite, freeze",
        run: |g| catalog::s12_security_passphrase_lock_erase_overwrite_freeze(g),
    },
    Scenario {
        name: "s13_firmware_update_and_activation",
        summary: "ndctl update-firmware in chunks, refusals the host provokes, live activate-firmware, a staged image after restart",
        run: |g| catalog::s13_firmware_update_and_activation(g),
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
        assert!(find("s6_fsdax_data_survives_restart").is_some());
        assert!(find("s9").is_none());
    }
}
