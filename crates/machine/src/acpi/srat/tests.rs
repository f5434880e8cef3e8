use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nvdimm_model::config::{DimmConfig, GIB, MAX_DIMMS, MIB};
use nvdimm_model::nfit::{self, SPA_FLAG_PROXIMITY_VALID, TYPE_SPA};
use nvdimm_model::PersistenceDomain;

use super::*;
use crate::acpi::{byte_sum, AcpiTables};
use crate::config::{MachineConfig, MAX_CPUS};
use crate::memory_map::RegionKind;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// What Linux reads from an SRAT (drivers/acpi/numa/srat.c, arch/x86/mm/srat.c).
#[derive(Debug, Default)]
struct Srat {
    /// APIC id -> proximity domain, enabled entries only.
    cpus: BTreeMap<u8, u32>,
    memory: Vec<MemoryDomain>,
}

/// Parses like Linux does, and fails where Linux would ignore the table or an entry.
fn parse_srat(t: &[u8]) -> Srat {
    assert_eq!(&t[..4], b"SRAT");
    assert_eq!(u32_at(t, 4) as usize, t.len());
    assert_eq!(byte_sum(t), 0, "checksum");
    assert_eq!(t[8], REVISION);
    assert!(t[8] >= 2, "revision 1 would cut memory domains to 8 bits");
    assert_eq!(u32_at(t, 36), 1, "reserved, 1 for backward compatibility");
    let mut srat = Srat::default();
    let mut at = HEADER_LEN;
    while at < t.len() {
        let (kind, len) = (t[at], usize::from(t[at + 1]));
        let e = &t[at..at + len];
        match kind {
            TYPE_PROCESSOR_APIC => {
                assert_eq!(len, PROCESSOR_APIC_LEN, "Linux calls a wrong length a bad SRAT");
                assert_ne!(u32_at(e, 4) & FLAG_ENABLED, 0, "a disabled CPU entry is skipped");
                let domain = u32::from(e[2]) | u32::from_le_bytes([e[9], e[10], e[11], 0]) << 8;
                assert!(srat.cpus.insert(e[3], domain).is_none(), "APIC id {} twice", e[3]);
            }
            TYPE_MEMORY => {
                assert_eq!(len, MEMORY_LEN, "Linux calls a wrong length a bad SRAT");
                let flags = u32_at(e, 28);
                assert_ne!(flags & FLAG_ENABLED, 0, "a disabled memory entry is skipped");
                srat.memory.push(MemoryDomain {
                    domain: u32_at(e, 2),
                    base: u64_at(e, 8),
                    length: u64_at(e, 16),
                    flags,
                });
            }
            other => panic!("unexpected SRAT entry type {other}"),
        }
        at += len;
    }
    assert_eq!(at, t.len(), "entries tile the table");
    srat
}

/// (proximity domain if valid, base, length) of each NFIT SPA range.
fn nfit_ranges(nfit_table: &[u8]) -> Vec<(Option<u32>, u64, u64)> {
    nfit::split_structures(&nfit_table[nfit::HEADER_LEN..])
        .into_iter()
        .filter(|(kind, _)| *kind == TYPE_SPA)
        .map(|(_, s)| {
            let valid = u16_at(s, 6) & SPA_FLAG_PROXIMITY_VALID != 0;
            (valid.then(|| u32_at(s, 12)), u64_at(s, 32), u64_at(s, 40))
        })
        .collect()
}

/// The domain rules Linux needs for pmem to get a node of its own, checked on the tables
/// as the guest gets them. Returns what is wrong, so a test can prove it finds breakage.
fn check_domains(srat: &Srat, nfit_table: &[u8], map: &MemoryMap, cpus: u8) -> Result<(), String> {
    let cpu_ids: Vec<u8> = srat.cpus.keys().copied().collect();
    if cpu_ids != (0..cpus).collect::<Vec<_>>() {
        return Err(format!("CPU entries for APIC ids {cpu_ids:?}, want 0..{cpus}"));
    }
    let host: BTreeSet<u32> = srat.cpus.values().copied().collect();
    if host != BTreeSet::from([HOST_PROXIMITY_DOMAIN]) {
        return Err(format!("CPUs in domains {host:?}"));
    }
    // Linux turns NUMA off unless SRAT memory covers the e820 RAM.
    for r in map.regions.iter().filter(|r| matches!(r.kind, RegionKind::Ram | RegionKind::Reserved | RegionKind::Acpi))
    {
        let covered = srat.memory.iter().any(|m| {
            m.domain == HOST_PROXIMITY_DOMAIN
                && m.flags == FLAG_ENABLED
                && m.base <= r.start
                && r.end() <= m.base + m.length
        });
        if !covered {
            return Err(format!("{} [{:#x}, {:#x}) is in no volatile domain-0 entry", r.name, r.start, r.end()));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, (domain, base, length)) in nfit_ranges(nfit_table).into_iter().enumerate() {
        let Some(domain) = domain else { return Err(format!("SPA range {i}: proximity domain not valid")) };
        if domain == HOST_PROXIMITY_DOMAIN || !seen.insert(domain) {
            return Err(format!("SPA range {i}: domain {domain} is not a domain of its own"));
        }
        let want = MemoryDomain { domain, base, length, flags: FLAG_ENABLED | MEMORY_FLAG_NON_VOLATILE };
        let found: Vec<_> = srat.memory.iter().filter(|m| m.base < base + length && base < m.base + m.length).collect();
        if found != [&want] {
            return Err(format!("SPA range {i} [{base:#x}+{length:#x}] domain {domain}: SRAT has {found:x?}"));
        }
    }
    // No SRAT memory the NFIT and the RAM blocks do not account for.
    let accounted = map.ram_blocks.len() + seen.len();
    if srat.memory.len() != accounted {
        return Err(format!("{} SRAT memory entries, {accounted} expected", srat.memory.len()));
    }
    Ok(())
}

fn dimms(sizes: &[u64]) -> PlatformConfig {
    let dimms = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| DimmConfig::with_defaults(i, PathBuf::from(format!("d{i}")), size))
        .collect();
    PlatformConfig::new(dimms, PersistenceDomain::CpuCache).expect("valid platform")
}

fn machines() -> Vec<(MachineConfig, PlatformConfig)> {
    vec![
        (MachineConfig::default(), PlatformConfig::default_in(Path::new("."))),
        (MachineConfig { memory: 6 * GIB, cpus: 2 }, dimms(&[2 * GIB, 18 * MIB, GIB])),
        (MachineConfig { memory: 64 * MIB, cpus: MAX_CPUS }, dimms(&vec![16 * MIB; MAX_DIMMS])),
    ]
}

fn tables(machine: &MachineConfig, platform: &PlatformConfig) -> (AcpiTables, MemoryMap) {
    let map = MemoryMap::new(machine, platform).expect("valid map");
    (AcpiTables::build(machine, platform, &map).expect("tables build"), map)
}

#[test]
fn srat_and_nfit_agree_on_every_domain() {
    for (machine, platform) in machines() {
        let (t, map) = tables(&machine, &platform);
        let srat = parse_srat(&t.get("SRAT").unwrap().bytes);
        let nfit_table = &t.get("NFIT").unwrap().bytes;
        check_domains(&srat, nfit_table, &map, machine.cpus).unwrap_or_else(|e| panic!("{machine:?}: {e}"));
    }
}

#[test]
fn default_layout_is_ram_and_cpu_in_domain_0_and_each_dimm_in_its_own() {
    let (machine, platform) = machines().remove(0);
    let (t, map) = tables(&machine, &platform);
    let srat = parse_srat(&t.get("SRAT").unwrap().bytes);
    assert_eq!(srat.cpus, BTreeMap::from([(0, 0)]));
    let (e, nv) = (FLAG_ENABLED, FLAG_ENABLED | MEMORY_FLAG_NON_VOLATILE);
    let d = &map.layout.dimms;
    assert_eq!(
        srat.memory,
        [
            MemoryDomain { domain: 0, base: 0, length: 512 * MIB, flags: e },
            MemoryDomain { domain: 1, base: d[0].spa_base, length: GIB, flags: nv },
            MemoryDomain { domain: 2, base: d[1].spa_base, length: GIB, flags: nv },
        ]
    );
}

#[test]
fn the_check_catches_tables_that_disagree() {
    let (machine, platform) = machines().remove(1);
    let (t, map) = tables(&machine, &platform);
    let good = parse_srat(&t.get("SRAT").unwrap().bytes);
    let nfit_table = t.get("NFIT").unwrap().bytes.clone();
    assert_eq!(check_domains(&good, &nfit_table, &map, machine.cpus), Ok(()));
    let spa = |i: usize| {
        let mut at = nfit::HEADER_LEN;
        let mut seen = 0;
        loop {
            if u16_at(&nfit_table, at) == TYPE_SPA {
                if seen == i {
                    return at;
                }
                seen += 1;
            }
            at += usize::from(u16_at(&nfit_table, at + 2));
        }
    };

    let mut wrong_domain = nfit_table.clone();
    wrong_domain[spa(1) + 12] = 1; // DIMM 1 claims DIMM 0's domain
    let mut not_valid = nfit_table.clone();
    not_valid[spa(2) + 6] = 0;
    let mut in_ram_domain = nfit_table.clone();
    in_ram_domain[spa(0) + 12] = 0;
    for (what, bad) in [("shared domain", wrong_domain), ("flag clear", not_valid), ("RAM's domain", in_ram_domain)] {
        assert!(check_domains(&good, &bad, &map, machine.cpus).is_err(), "{what} not caught");
    }

    let mut no_window = parse_srat(&t.get("SRAT").unwrap().bytes);
    no_window.memory.pop();
    let mut volatile_window = parse_srat(&t.get("SRAT").unwrap().bytes);
    volatile_window.memory.last_mut().unwrap().flags = FLAG_ENABLED;
    let mut short_ram = parse_srat(&t.get("SRAT").unwrap().bytes);
    short_ram.memory[0].length -= 2 * MIB;
    let mut cpu_elsewhere = parse_srat(&t.get("SRAT").unwrap().bytes);
    cpu_elsewhere.cpus.insert(1, 3);
    for (what, bad) in [
        ("window missing", no_window),
        ("volatile window", volatile_window),
        ("RAM uncovered", short_ram),
        ("CPU", cpu_elsewhere),
    ] {
        assert!(check_domains(&bad, &nfit_table, &map, machine.cpus).is_err(), "{what} not caught");
    }
}

#[test]
fn processor_entries_carry_the_whole_domain() {
    // Revision >= 2: Linux reads domain bits 31:8 from bytes 9..12.
    let e = processor(7, 0x0123_4567);
    assert_eq!((e[0], e[1], e[2], e[3]), (TYPE_PROCESSOR_APIC, 16, 0x67, 7));
    assert_eq!(u32_at(&e, 4), FLAG_ENABLED);
    assert_eq!(&e[9..12], &[0x45, 0x23, 0x01]);
}
