use std::path::Path;

use super::*;
use crate::config::{MemdevFlags, MIB};

fn platform() -> (PlatformConfig, PlatformLayout) {
    let mut config = PlatformConfig::default_in(Path::new("/nonexistent"));
    config.dimms[1].flush_hints = 2;
    config.dimms[1].memdev_flags = MemdevFlags(MemdevFlags::NOT_ARMED | MemdevFlags::SMART_NOTIFY);
    config.dimms[0].identity.vendor_id = 0x8089;
    config.dimms[0].identity.manufacturing_location = 0xa2;
    config.dimms[0].identity.manufacturing_date = 0x1740;
    config.dimms[0].identity.serial_number = 0x1234_5678;
    let layout = PlatformLayout::packed(
        &config,
        0x1_0000_0000,
        2 * MIB,
        0xfe00_0000,
        0x7000_0000,
        0x7000_0028,
    );
    (config, layout)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn of_type(table: &[u8], kind: u16) -> Vec<&[u8]> {
    split_structures(&table[HEADER_LEN..])
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, b)| b)
        .collect()
}

#[test]
fn header_length_and_checksum() {
    let (config, layout) = platform();
    let table = build(&config, &layout);
    assert_eq!(&table[0..4], b"NFIT");
    assert_eq!(u32_at(&table, 4) as usize, table.len());
    assert_eq!(table[8], 1);
    assert_eq!(&table[10..16], b"VNVDMM");
    assert_eq!(&table[16..24], b"VNVDIMM ");
    assert_eq!(&table[36..40], &[0; 4]);
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    assert_eq!(sum, 0);
    // The sub-structures tile the body exactly.
    let parts = split_structures(&table[HEADER_LEN..]);
    let total: usize = parts.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(total + HEADER_LEN, table.len());
}

#[test]
fn identical_on_every_run() {
    let (config, layout) = platform();
    assert_eq!(build(&config, &layout), build(&config, &layout));
}

#[test]
fn spa_ranges() {
    let (config, layout) = platform();
    let table = build(&config, &layout);
    let spas = of_type(&table, TYPE_SPA);
    assert_eq!(spas.len(), 2);
    for (i, s) in spas.iter().enumerate() {
        assert_eq!(s.len(), 56);
        assert_eq!(u16_at(s, 2), 56);
        assert_eq!(u16_at(s, 4), i as u16 + 1);
        assert_eq!(
            u16_at(s, 6),
            SPA_FLAG_PROXIMITY_VALID,
            "only the proximity domain is valid"
        );
        assert_eq!(u32_at(s, 12), i as u32 + 1, "DIMM {i} in domain {}", i + 1);
        assert_eq!(
            &s[16..32],
            &[
                0x79, 0xd3, 0xf0, 0x66, 0xf3, 0xb4, 0x74, 0x40, 0xac, 0x43, 0x0d, 0x33, 0x18, 0xb7,
                0x8c, 0xdb
            ]
        );
        assert_eq!(u64_at(s, 32), layout.dimms[i].spa_base);
        assert_eq!(u64_at(s, 40), config.dimms[i].size);
        assert_eq!(u64_at(s, 48), 0x8008);
    }
}

#[test]
fn memdevs() {
    let (config, layout) = platform();
    let table = build(&config, &layout);
    let maps = of_type(&table, TYPE_MEMDEV);
    assert_eq!(maps.len(), 2);
    let mut phys = std::collections::HashSet::new();
    for (i, m) in maps.iter().enumerate() {
        assert_eq!(m.len(), 48);
        assert_eq!(u32_at(m, 4), config.dimms[i].handle);
        assert!(phys.insert(u16_at(m, 8)));
        assert_eq!(u16_at(m, 10), 0);
        assert_eq!(u16_at(m, 12), i as u16 + 1);
        assert_eq!(u16_at(m, 14), i as u16 + 1);
        assert_eq!(u64_at(m, 16), config.dimms[i].size);
        assert_eq!(u64_at(m, 24), 0);
        assert_eq!(u64_at(m, 32), 0);
        assert_eq!(u16_at(m, 40), 0);
        assert_eq!(u16_at(m, 42), 1);
        assert_eq!(u16_at(m, 44), config.dimms[i].memdev_flags.0);
    }
    assert_eq!(
        u16_at(maps[1], 44),
        MemdevFlags::NOT_ARMED | MemdevFlags::SMART_NOTIFY
    );
}

#[test]
fn control_regions_decode_to_ndctl_id() {
    let (config, layout) = platform();
    let table = build(&config, &layout);
    let dcrs = of_type(&table, TYPE_DCR);
    assert_eq!(dcrs.len(), 2);
    for (i, d) in dcrs.iter().enumerate() {
        let id = &config.dimms[i].identity;
        assert_eq!(d.len(), 80);
        assert_eq!(u16_at(d, 4), i as u16 + 1);
        assert_eq!(d[18] & 1, 1);
        assert_eq!(u16_at(d, 28), 0x0301);
        assert_eq!(u16_at(d, 30), 0);
        assert_eq!(linux_dimm_id(d).unwrap(), id.ndctl_id());
        // The other identity fields, read the way core.c's sysfs attributes read them.
        let be16 = |at: usize| u16::from_be_bytes(d[at..at + 2].try_into().unwrap());
        assert_eq!(be16(8), id.device_id);
        assert_eq!(be16(10), id.revision_id);
        assert_eq!(be16(12), id.subsystem_vendor_id);
        assert_eq!(be16(14), id.subsystem_device_id);
        assert_eq!(be16(16), id.subsystem_revision_id);
    }
    assert_eq!(linux_dimm_id(dcrs[0]).unwrap(), "8089-a2-1740-12345678");
    // Little-endian storage (QEMU's mistake) would have given a different id.
    assert_eq!(&dcrs[0][24..28], &[0x12, 0x34, 0x56, 0x78]);
}

#[test]
fn flush_hints_only_when_present() {
    let (mut config, _) = platform();
    config.dimms[0].flush_hints = 0;
    let layout = PlatformLayout::packed(
        &config,
        0x1_0000_0000,
        2 * MIB,
        0xfe00_0000,
        0x7000_0000,
        0x7000_0028,
    );
    let table = build(&config, &layout);
    let hints = of_type(&table, TYPE_FLUSH_HINT);
    assert_eq!(hints.len(), 1);
    let h = hints[0];
    assert_eq!(h.len(), 16 + 8 * 2);
    assert_eq!(u32_at(h, 4), config.dimms[1].handle);
    assert_eq!(u16_at(h, 8), 2);
    assert_eq!(u64_at(h, 16), layout.dimms[1].flush_hints[0]);
    assert_eq!(u64_at(h, 24), layout.dimms[1].flush_hints[1]);
}

#[test]
fn capability_bits_per_domain() {
    let (mut config, layout) = platform();
    let cases = [
        (PersistenceDomain::CpuCache, Some((1u8, 0b11u32))),
        (PersistenceDomain::MemoryController, Some((1, 0b10))),
        (PersistenceDomain::None, None),
    ];
    for (domain, want) in cases {
        config.persistence_domain = domain;
        let table = build(&config, &layout);
        let caps = of_type(&table, TYPE_CAPABILITIES);
        match want {
            None => assert!(caps.is_empty(), "{domain:?}"),
            Some((highest, bits)) => {
                assert_eq!(caps.len(), 1);
                let c = caps[0];
                assert_eq!(c.len(), 16);
                assert_eq!(c[4], highest);
                assert_eq!(u32_at(c, 8), bits);
                // Linux's mask: caps & ((1 << (highest + 1)) - 1) keeps every bit we set.
                assert_eq!(bits & ((1 << (u32::from(highest) + 1)) - 1), bits);
            }
        }
    }
}

#[test]
fn body_is_the_table_without_header() {
    let (config, layout) = platform();
    assert_eq!(
        structures(&config, &layout),
        build(&config, &layout)[HEADER_LEN..]
    );
}

#[test]
fn every_dimm_has_a_proximity_domain_of_its_own() {
    // Linux gives each domain its own node: two DIMMs sharing one, or a DIMM in the
    // RAM's domain, would make kmem online one DIMM's memory into another's node.
    let domains: Vec<u32> = (0..crate::config::MAX_DIMMS)
        .map(proximity_domain)
        .collect();
    let unique: std::collections::BTreeSet<u32> = domains.iter().copied().collect();
    assert_eq!(unique.len(), domains.len(), "{domains:?}");
    assert!(!unique.contains(&HOST_PROXIMITY_DOMAIN));
    // SRAT revision 1 kept only 8 bits of a memory domain; stay far below that anyway.
    assert!(domains.iter().all(|&d| d < 256));
}
