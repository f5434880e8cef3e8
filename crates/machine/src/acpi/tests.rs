use std::path::Path;

use nvdimm_model::PlatformConfig;

use super::*;
use crate::memory_map::{ACPI_AREA_START, IOAPIC_ADDR, LAPIC_ADDR};

fn build(cpus: u8) -> AcpiTables {
    let machine = MachineConfig { cpus, ..MachineConfig::default() };
    let platform = PlatformConfig::default_in(Path::new("."));
    let map = MemoryMap::new(&machine, &platform).expect("valid map");
    AcpiTables::build(&machine, &platform, &map).expect("tables build")
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The ACPI area as the guest would see it after the VMM copied every blob in.
fn guest_area(tables: &AcpiTables) -> Vec<u8> {
    let mut area = vec![0u8; (ACPI_AREA_END - ACPI_AREA_START) as usize];
    for (addr, bytes) in tables.blobs() {
        let at = (addr - ACPI_AREA_START) as usize;
        assert!(area[at..at + bytes.len()].iter().all(|&b| b == 0), "blob at {addr:#x} overlaps another");
        area[at..at + bytes.len()].copy_from_slice(bytes);
    }
    area
}

/// Reads the table at guest address `addr` out of `area` by its header length.
fn table_at(area: &[u8], addr: u64) -> &[u8] {
    let at = (addr - ACPI_AREA_START) as usize;
    let len = u32_at(area, at + 4) as usize;
    &area[at..at + len]
}

#[test]
fn every_table_has_a_consistent_header() {
    let tables = build(1);
    let sigs: Vec<_> = tables.tables.iter().map(|t| t.signature.as_str()).collect();
    assert_eq!(sigs, TABLE_ORDER);
    for t in &tables.tables {
        assert_eq!(&t.bytes[..4], t.signature.as_bytes());
        assert_eq!(u32_at(&t.bytes, 4) as usize, t.bytes.len(), "{} length", t.signature);
        assert_eq!(byte_sum(&t.bytes), 0, "{} checksum", t.signature);
        assert_eq!(t.guest_addr % TABLE_ALIGN, 0);
        assert!(t.guest_addr >= RSDP_ADDR + RSDP_LEN as u64);
        assert!(t.guest_addr + t.bytes.len() as u64 <= ACPI_AREA_END);
    }
}

#[test]
fn rsdp_checksums_and_points_at_xsdt() {
    let tables = build(1);
    let rsdp = &tables.rsdp;
    assert_eq!(rsdp.len(), RSDP_LEN);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(byte_sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(byte_sum(rsdp), 0, "extended checksum");
    assert_eq!(rsdp[15], 2, "revision");
    assert_eq!(u32_at(rsdp, 20) as usize, RSDP_LEN);
    assert_eq!(u64_at(rsdp, 24), tables.get("XSDT").unwrap().guest_addr);
    assert_eq!(tables.rsdp_addr, RSDP_ADDR);
}

#[test]
fn pointers_lead_from_rsdp_to_every_table() {
    let tables = build(1);
    let area = guest_area(&tables);
    let rsdp_at = (tables.rsdp_addr - ACPI_AREA_START) as usize;
    let xsdt = table_at(&area, u64_at(&area, rsdp_at + 24));
    assert_eq!(&xsdt[..4], b"XSDT");
    let entries: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let reached: Vec<&[u8]> = entries.iter().map(|&addr| &table_at(&area, addr)[..4]).collect();
    assert_eq!(reached, [b"FACP", b"APIC", b"SSDT", b"NFIT", b"SRAT"]);
    for (&addr, sig) in entries.iter().zip(XSDT_ENTRIES) {
        assert_eq!(addr, tables.get(sig).unwrap().guest_addr);
        assert_eq!(table_at(&area, addr), tables.get(sig).unwrap().bytes.as_slice());
    }
    let facp = table_at(&area, entries[0]);
    assert_eq!(u32_at(facp, 40), 0, "32-bit DSDT pointer unused");
    let dsdt = table_at(&area, u64_at(facp, 140));
    assert_eq!(&dsdt[..4], b"DSDT");
    assert_eq!(dsdt, tables.get("DSDT").unwrap().bytes.as_slice());
}

#[test]
fn fadt_is_hardware_reduced_revision_6() {
    let tables = build(1);
    let facp = &tables.get("FACP").unwrap().bytes;
    assert_eq!(facp.len(), 276);
    assert_eq!(facp[8], 6, "major revision");
    assert_eq!(facp[131], 5, "minor revision");
    assert_ne!(u32_at(facp, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
    let boot_arch = u16::from_le_bytes([facp[109], facp[110]]);
    assert_eq!(boot_arch & 0b11, 0, "no legacy devices, no 8042");
    assert_eq!(u32_at(facp, 36), 0, "no FACS");
}

#[test]
fn madt_has_one_local_apic_per_cpu_and_an_io_apic() {
    for cpus in [1u8, 4, 254] {
        let tables = build(cpus);
        let madt = &tables.get("APIC").unwrap().bytes;
        assert_eq!(u32_at(madt, 36) as u64, LAPIC_ADDR);
        let mut at = 44;
        let (mut lapic_ids, mut ioapics, mut overrides, mut nmis) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        while at < madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            assert!(len >= 2, "zero-length MADT entry");
            match kind {
                0 => {
                    assert_eq!(u32_at(madt, at + 4) & 1, 1, "enabled");
                    lapic_ids.push(madt[at + 3]);
                }
                1 => ioapics.push((madt[at + 2], u32_at(madt, at + 4), u32_at(madt, at + 8))),
                2 => {
                    assert_eq!((len, madt[at + 2]), (10, 0), "ISA bus override of 10 bytes");
                    let flags = u16::from_le_bytes([madt[at + 8], madt[at + 9]]);
                    overrides.push((madt[at + 3], u32_at(madt, at + 4), flags));
                }
                4 => {
                    assert_eq!(len, 6);
                    nmis.push((madt[at + 2], madt[at + 5]));
                }
                other => panic!("unexpected MADT entry type {other}"),
            }
            at += len;
        }
        assert_eq!(at, madt.len());
        assert_eq!(lapic_ids, (0..cpus).collect::<Vec<_>>());
        assert_eq!(ioapics, vec![(cpus, IOAPIC_ADDR as u32, IOAPIC_GSI_BASE)]);
        // COM1's IRQ 4 stated explicitly: GSI 4, edge (bits 3:2 = 01), active high (bits 1:0 = 01).
        assert_eq!(overrides, vec![(COM1_IRQ as u8, COM1_IRQ, 0b0101)]);
        assert_eq!(nmis, vec![(0xFF, 1)], "LINT1 is NMI on every CPU");
        assert_eq!(byte_sum(madt), 0);
    }
}

#[test]
fn output_is_byte_identical_run_to_run() {
    assert_eq!(build(2), build(2));
    assert_ne!(build(1).get("APIC"), build(2).get("APIC"));
}

#[test]
fn foreign_tables_are_checked() {
    assert!(matches!(check_sdt("NFIT", &[]), Err(AcpiError::BadTable { signature: "NFIT", .. })));
    let mut ssdt = build(1).get("SSDT").unwrap().bytes.clone();
    assert_eq!(check_sdt("SSDT", &ssdt), Ok(()));
    assert!(check_sdt("NFIT", &ssdt).is_err(), "wrong signature");
    let last = ssdt.len() - 1;
    ssdt[last] ^= 1;
    let err = check_sdt("SSDT", &ssdt).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    ssdt.push(0);
    assert!(check_sdt("SSDT", &ssdt).unwrap_err().to_string().contains("length"));
}

#[test]
fn largest_configuration_fits_the_acpi_area() {
    use nvdimm_model::config::{DimmConfig, MAX_DIMMS, MAX_FLUSH_HINTS, MIB};
    let dimms = (0..MAX_DIMMS)
        .map(|i| {
            let mut d = DimmConfig::with_defaults(i, format!("d{i}").into(), 16 * MIB);
            d.flush_hints = MAX_FLUSH_HINTS;
            d
        })
        .collect();
    let platform = PlatformConfig::new(dimms, nvdimm_model::PersistenceDomain::CpuCache).unwrap();
    let machine = MachineConfig { memory: 4 * 1024 * MIB, cpus: crate::config::MAX_CPUS };
    let map = MemoryMap::new(&machine, &platform).unwrap();
    let tables = AcpiTables::build(&machine, &platform, &map).expect("largest configuration fits");
    let last = tables.tables.last().unwrap();
    assert!(last.guest_addr + last.bytes.len() as u64 <= ACPI_AREA_END);
    let nfit = &tables.get("NFIT").unwrap().bytes;
    assert!(nfit.len() > MAX_DIMMS * MAX_FLUSH_HINTS as usize * 8, "NFIT carries every hint");
}

#[test]
fn fadt_points_at_the_power_registers() {
    use super::power::{RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT};
    let tables = build(1);
    let facp = &tables.get("FACP").unwrap().bytes;
    // Generic Address Structure: space id, bit width, bit offset, access size, address.
    let gas = |at: usize| (facp[at], facp[at + 1], facp[at + 2], facp[at + 3], u64_at(facp, at + 4));
    let io_byte = |port: u16| (1u8, 8u8, 0u8, 1u8, u64::from(port));
    assert_eq!(gas(116), io_byte(RESET_PORT), "RESET_REG");
    assert_eq!(facp[128], RESET_VALUE, "RESET_VALUE");
    assert_ne!(u32_at(facp, 112) & (1 << 10), 0, "RESET_REG_SUP");
    assert_eq!(gas(244), io_byte(SLEEP_CONTROL_PORT), "SLEEP_CONTROL_REG");
    assert_eq!(gas(256), io_byte(SLEEP_STATUS_PORT), "SLEEP_STATUS_REG");
}

#[test]
fn dsdt_has_s5_and_ssdt_has_the_ged() {
    use super::ged::{device_aml, GedConfig, GED_GSI};
    use crate::memory_map::GED_MMIO_ADDR;
    let tables = build(1);
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    let find = |needle: &[u8]| dsdt.windows(needle.len()).position(|w| w == needle);
    // NameOp "_S5_" PackageOp PkgLength NumElements(4) BytePrefix 5 BytePrefix 5 Zero Zero.
    assert!(find(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 5, 0x0A, 5, 0x00, 0x00]).is_some(), "\\_S5");
    assert_eq!(GedConfig::default(), GedConfig { mmio_base: GED_MMIO_ADDR as u32, gsi: GED_GSI });
    let ssdt = &tables.get("SSDT").unwrap().bytes;
    let ged = device_aml(&GedConfig::default());
    assert!(ssdt.windows(ged.len()).any(|w| w == ged.as_slice()), "GED0 device in the SSDT");
    assert_eq!(check_sdt("SSDT", ssdt), Ok(()), "length and checksum fixed after appending");
    assert!(ged.windows(4).any(|w| w == (GED_MMIO_ADDR as u32).to_le_bytes()));
}
