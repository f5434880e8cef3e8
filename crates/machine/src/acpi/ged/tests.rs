use super::*;

/// One resource descriptor of a `_CRS` buffer: its item tag and its body.
#[derive(Debug, PartialEq, Eq)]
struct Resource<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Small item "End Tag" (ACPI 6.5 6.4.2.9).
const END_TAG: u8 = 0x0F;
/// Large item "Extended Interrupt Descriptor" (6.4.3.6).
const EXTENDED_INTERRUPT: u8 = 0x89;

/// PkgLength at the start of `aml`: (value, bytes it occupies).
fn pkg_length(aml: &[u8]) -> (usize, usize) {
    let lead = aml[0];
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return (usize::from(lead & 0x3F), 1);
    }
    let mut value = usize::from(lead & 0x0F);
    for (i, &b) in aml[1..=follow].iter().enumerate() {
        value |= usize::from(b) << (4 + 8 * i);
    }
    (value, 1 + follow)
}

/// The resource descriptors of the `Name (_CRS, Buffer)` in a device's AML, end tag included.
fn crs_resources(device: &[u8]) -> Vec<Resource<'_>> {
    const NAME_CRS_BUFFER: [u8; 6] = [0x08, b'_', b'C', b'R', b'S', 0x11];
    let at = device.windows(6).position(|w| w == NAME_CRS_BUFFER).expect("Name (_CRS, Buffer) in the device");
    let pkg = &device[at + 6..];
    let (len, len_bytes) = pkg_length(pkg);
    let after_size = match pkg[len_bytes] {
        0x0A => len_bytes + 2, // BytePrefix n
        0x0B => len_bytes + 3, // WordPrefix n
        other => panic!("unexpected buffer size encoding {other:#x}"),
    };
    let mut data = &pkg[after_size..len];
    let mut out = Vec::new();
    while !data.is_empty() {
        let (tag, header, body_len) = if data[0] & 0x80 == 0 {
            ((data[0] >> 3) & 0x0F, 1, usize::from(data[0] & 0x07))
        } else {
            (data[0], 3, usize::from(u16::from_le_bytes([data[1], data[2]])))
        };
        out.push(Resource { tag, body: &data[header..header + body_len] });
        data = &data[header + body_len..];
        if tag == END_TAG {
            break;
        }
    }
    assert!(data.is_empty(), "bytes after the end tag: {data:x?}");
    out
}

#[test]
fn crs_holds_the_interrupt_and_nothing_else() {
    // Linux's acpi-ged probe fails ("unable to parse IRQ resource") on any _CRS resource
    // that is not an interrupt; the register page belongs in the OperationRegion only.
    for config in [GedConfig::default(), GedConfig { mmio_base: 0xD000_0000, gsi: 23 }] {
        let aml = device_aml(&config);
        let resources = crs_resources(&aml);
        let tags: Vec<u8> = resources.iter().map(|r| r.tag).collect();
        assert_eq!(tags, [EXTENDED_INTERRUPT, END_TAG], "{resources:x?}");
        let irq = resources[0].body;
        // Flags: consumer (bit 0), edge (bit 1), active high (bit 2 clear), exclusive (bit 3 clear).
        assert_eq!(irq[0], 0b0011, "consumer, edge, active-high, exclusive");
        assert_eq!(irq[1], 1, "one interrupt");
        assert_eq!(u32::from_le_bytes(irq[2..6].try_into().unwrap()), config.gsi);
        assert_eq!(irq.len(), 6, "no resource source: Linux takes it as a GSI only without one");
    }
}

#[test]
fn the_register_stays_reachable_through_the_operation_region() {
    let config = GedConfig::default();
    let aml = device_aml(&config);
    // OpRegionOp "GDST" SystemMemory(0) DWordPrefix base BytePrefix 4.
    let mut region = vec![0x5B, 0x80, b'G', b'D', b'S', b'T', 0x00, 0x0C];
    region.extend(config.mmio_base.to_le_bytes());
    region.extend([0x0A, GED_MMIO_SIZE as u8]);
    assert!(aml.windows(region.len()).any(|w| w == region.as_slice()), "{aml:x?}");
}

/// ACPICA's disassembler reads the device back as the ASL in `device_aml`'s doc comment.
#[test]
fn aml_disassembles_to_the_documented_device() {
    let config = GedConfig {
        mmio_base: 0xC000_1000,
        gsi: 5,
    };
    let mut dsdt = acpi_tables::sdt::Sdt::new(*b"DSDT", 36, 2, *b"VNVDMM", *b"GEDTEST ", 1);
    dsdt.append_slice(&acpi_tables::aml::Scope::raw("\\_SB_".into(), device_aml(&config)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dsdt.dat"), dsdt.as_slice()).unwrap();
    let out = std::process::Command::new("iasl")
        .current_dir(dir.path())
        .args(["-d", "dsdt.dat"])
        .output()
        .expect("iasl must be installed (Debian acpica-tools, scripts/install-deps)");
    let dsl = std::fs::read_to_string(dir.path().join("dsdt.dsl"))
        .unwrap_or_else(|_| panic!("iasl -d failed: {}", String::from_utf8_lossy(&out.stderr)));
    let squashed: String = dsl.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Device (GED0)",
        "Name (_HID, \"ACPI0013\" /* Generic Event Device */)",
        // The interrupt is all of _CRS (Linux's evged fails the probe on any other resource).
        "Name (_CRS, ResourceTemplate () // _CRS: Current Resource Settings { \
         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000005, } })",
        "OperationRegion (GDST, SystemMemory, 0xC0001000, 0x04)",
        "Field (GDST, DWordAcc, NoLock, Preserve) { GDAT, 32 }",
        "Method (_EVT, 1, Serialized) // _EVT: Event { Local0 = GDAT /* \\_SB_.GED0.GDAT */ \
         If ((Local0 & One)) { \\_SB.NVDR.NEVT () } }",
    ] {
        assert!(squashed.contains(needle), "{needle:?} not in:\n{dsl}");
    }
}
