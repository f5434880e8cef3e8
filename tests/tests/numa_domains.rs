//! Both backends put DIMM `i`'s window in proximity domain / NUMA node `i + 1`, and the
//! NFIT's SPA range says the same, so `ndctl list -R` shows the same `target_node` on KVM
//! and TCG. KVM: our SRAT (`vnvdimm_machine::acpi::srat`). TCG: QEMU builds the SRAT from
//! its `-numa node,nodeid=N` list (`TcgLayout::nodes`, node id = proximity domain). Both
//! take the NFIT from `nvdimm_model::nfit`.

use std::path::PathBuf;

use nvdimm_model::config::{DimmConfig, MIB};
use nvdimm_model::nfit::{self, proximity_domain, HEADER_LEN, SPA_FLAG_PROXIMITY_VALID, TYPE_SPA};
use nvdimm_model::{PersistenceDomain, PlatformConfig, PlatformLayout};
use vnvdimm_machine::acpi::srat::memory_domains;
use vnvdimm_machine::{MachineConfig, MemoryMap};
use vnvdimm_tcg::layout::NodeMemory;
use vnvdimm_tcg::{TcgLayout, TcgLayoutOptions};

fn platform() -> PlatformConfig {
    let dimms = [256 * MIB, 130 * MIB, 64 * MIB]
        .iter()
        .enumerate()
        .map(|(i, &size)| DimmConfig::with_defaults(i, PathBuf::from(format!("d{i}")), size))
        .collect();
    PlatformConfig::new(dimms, PersistenceDomain::CpuCache).expect("valid platform")
}

/// (proximity domain, base, length) of each SPA range, in DIMM order; the domain must be valid.
fn nfit_domains(config: &PlatformConfig, layout: &PlatformLayout) -> Vec<(u32, u64, u64)> {
    let table = nfit::build(config, layout);
    nfit::split_structures(&table[HEADER_LEN..])
        .into_iter()
        .filter(|(kind, _)| *kind == TYPE_SPA)
        .map(|(_, s)| {
            let at = |r: std::ops::Range<usize>| s[r].iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
            assert_ne!(at(6..8) as u16 & SPA_FLAG_PROXIMITY_VALID, 0, "proximity domain valid");
            (at(12..16) as u32, at(32..40), at(40..48))
        })
        .collect()
}

#[test]
fn kvm_srat_and_nfit_put_dimm_i_in_domain_i_plus_1() {
    let config = platform();
    let map = MemoryMap::new(&MachineConfig::default(), &config).expect("valid map");
    let windows: Vec<(u32, u64, u64)> = memory_domains(&config, &map)
        .into_iter()
        .filter(|m| m.domain != nfit::HOST_PROXIMITY_DOMAIN)
        .map(|m| (m.domain, m.base, m.length))
        .collect();
    assert_eq!(windows, nfit_domains(&config, &map.layout));
    let domains: Vec<u32> = windows.iter().map(|w| w.0).collect();
    assert_eq!(domains, [1, 2, 3]);
}

#[test]
fn tcg_numa_nodes_and_nfit_put_dimm_i_in_node_i_plus_1() {
    let config = platform();
    let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).expect("valid TCG layout");
    // QEMU numbers nodes by position in the -numa list and uses the number as the SRAT domain.
    let nodes: Vec<(u32, u64, u64)> = layout
        .nodes()
        .into_iter()
        .enumerate()
        .filter_map(|(id, (what, range))| match what {
            NodeMemory::Dimm(i) => {
                assert_eq!(id as u32, proximity_domain(i), "QEMU node of DIMM {i}");
                Some((id as u32, range.start, range.end - range.start))
            }
            _ => None,
        })
        .collect();
    assert_eq!(nodes, nfit_domains(&config, &layout.platform_layout()));
}
