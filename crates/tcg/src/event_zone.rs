//! How a TCG guest learns about host-raised NVDIMM notifications.
//!
//! Under KVM the VMM raises an event that makes the guest run `\_SB.NVDR.NEVT`. Under
//! QEMU nothing the host can trigger runs our AML: QEMU sets ACPI GPE status bits only
//! for its own devices (PCI/CPU/memory/NVDIMM hotplug, vmgenid), each tied to QEMU's own
//! `_Exx` methods, and QMP/HMP cannot set a GPE bit. So the guest polls instead: this
//! extra SSDT declares an ACPI thermal zone whose temperature method first calls
//! `\_SB.NVDR.NEVT()` (which only reads the mailbox counters when nothing is pending) and
//! whose `_TZP` asks Linux's built-in ACPI thermal driver to read the temperature every
//! [`POLL_TENTHS`] tenths of a second. A host notification therefore reaches the guest's
//! nfit driver within one polling period. ASL equivalent:
//!
//! ```text
//! DefinitionBlock ("", "SSDT", 2, "VNVDMM", "VNVEVENT", 1) {
//!     ThermalZone (\_TZ.VNVE) {
//!         Name (_TZP, 5)
//!         Method (_TMP) { \_SB.NVDR.NEVT () Return (3000) }   // 26.85 C
//!         Method (_CRT) { Return (3732) }                      // 100 C, never reached
//!     }
//! }
//! ```

/// Polling period of the thermal zone in tenths of a second.
pub const POLL_TENTHS: u8 = 5;
/// Temperature reported, in tenths of a kelvin (26.85 °C).
pub const REPORTED_TEMP: u16 = 3000;
/// Critical trip point (100 °C). Linux needs one valid trip to register the zone.
pub const CRITICAL_TEMP: u16 = 3732;

const OEM_ID: &[u8; 6] = b"VNVDMM";
const OEM_TABLE_ID: &[u8; 8] = b"VNVEVENT";

/// AML PkgLength of a package whose contents (after the PkgLength) are `body` bytes.
fn pkg_length(body: usize) -> Vec<u8> {
    // The encoded length counts its own bytes.
    if body + 1 < 0x40 {
        return vec![(body + 1) as u8];
    }
    let total = body + 2;
    debug_assert!(total < 0x1000, "event SSDT objects are small");
    vec![0x40 | (total & 0x0f) as u8, (total >> 4) as u8]
}

fn method(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut inner = name.to_vec();
    inner.push(0x00); // no arguments, not serialized
    inner.extend_from_slice(body);
    let mut out = vec![0x14];
    out.extend(pkg_length(inner.len()));
    out.extend(inner);
    out
}

fn return_word(value: u16) -> Vec<u8> {
    let mut out = vec![0xA4, 0x0B];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// The complete SSDT (header and checksum included).
pub fn build_event_ssdt() -> Vec<u8> {
    let mut zone = Vec::new();
    // \_TZ.VNVE as a DualNamePath from the root.
    zone.extend_from_slice(b"\\\x2e_TZ_VNVE");
    zone.extend_from_slice(&[0x08]);
    zone.extend_from_slice(b"_TZP");
    zone.extend_from_slice(&[0x0A, POLL_TENTHS]);
    let mut tmp = Vec::new();
    // \_SB.NVDR.NEVT() as a MultiNamePath of three segments, no arguments.
    tmp.extend_from_slice(b"\\\x2f\x03_SB_NVDRNEVT");
    tmp.extend(return_word(REPORTED_TEMP));
    zone.extend(method(b"_TMP", &tmp));
    zone.extend(method(b"_CRT", &return_word(CRITICAL_TEMP)));
    let mut aml = vec![0x5B, 0x85];
    aml.extend(pkg_length(zone.len()));
    aml.extend(zone);

    let length = (36 + aml.len()) as u32;
    let mut t = Vec::with_capacity(length as usize);
    t.extend_from_slice(b"SSDT");
    t.extend_from_slice(&length.to_le_bytes());
    t.push(2); // revision
    t.push(0); // checksum, set below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"VNVD");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend(aml);
    let sum = t.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_header_and_checksum() {
        let t = build_event_ssdt();
        assert_eq!(&t[..4], b"SSDT");
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize, t.len());
        assert_eq!(t.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        assert_eq!(t[36..38], [0x5B, 0x85]);
    }

    #[test]
    fn pkg_length_counts_itself() {
        assert_eq!(pkg_length(0x3e), vec![0x3f]);
        assert_eq!(pkg_length(0x3f), vec![0x41, 0x04]); // 0x41 = 0x40 | 1, total 0x41
    }

    /// iasl is the independent check: it must disassemble the table into the ASL the
    /// module documentation promises. Skips (with a message) only where iasl is absent.
    #[test]
    fn iasl_disassembles_the_promised_asl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.dat");
        std::fs::write(&path, build_event_ssdt()).unwrap();
        let out = match std::process::Command::new("iasl").arg("-d").arg(&path).output() {
            Ok(out) => out,
            Err(e) => panic!("iasl (acpica-tools) is needed for this test: {e}"),
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dsl = std::fs::read_to_string(dir.path().join("event.dsl")).unwrap();
        for needle in [
            "ThermalZone (\\_TZ.VNVE)",
            "Name (_TZP, 0x05)",
            "Method (_TMP, 0, NotSerialized)",
            "\\_SB.NVDR.NEVT ()",
            "Return (0x0BB8)",
            "Method (_CRT, 0, NotSerialized)",
            "Return (0x0E94)",
        ] {
            assert!(dsl.contains(needle), "missing {needle:?} in:\n{dsl}");
        }
    }
}
