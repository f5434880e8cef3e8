use std::path::Path as FsPath;

use super::*;
use crate::config::MIB;

fn platform() -> (PlatformConfig, PlatformLayout) {
    let config = PlatformConfig::default_in(FsPath::new("/nonexistent"));
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn header_and_checksum() {
    let (config, layout) = platform();
    let t = build_ssdt(&config, &layout);
    assert_eq!(&t[0..4], b"SSDT");
    assert_eq!(
        u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
        t.len()
    );
    assert_eq!(t[8], 2);
    assert_eq!(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    assert_eq!(t, build_ssdt(&config, &layout));
}

#[test]
fn names_present() {
    let (config, layout) = platform();
    let t = build_ssdt(&config, &layout);
    for name in [
        "NVDR", "_HID", "NCAL", "_DSM", "NEVT", "_FIT", "NV00", "NV01", "_LSI", "_LSR", "_LSW",
        "SEQN",
    ] {
        assert!(contains(&t, name.as_bytes()), "{name} missing");
    }
    assert!(contains(&t, b"ACPI0012\0"));
    // Stall(10) in the poll loop.
    assert!(contains(&t, &[0x5b, 0x21, 0x0a, 0x0a]));
}

#[test]
fn label_methods_only_with_label_area() {
    let (mut config, layout) = platform();
    for dimm in &mut config.dimms {
        dimm.label_size = 0;
    }
    let t = build_ssdt(&config, &layout);
    assert!(!contains(&t, b"_LSI"));
    assert!(!contains(&t, b"_LSR"));
}

#[test]
fn fit_method_carries_the_nfit_body() {
    let (config, layout) = platform();
    let t = build_ssdt(&config, &layout);
    assert!(contains(&t, &nfit::structures(&config, &layout)));
    let without = build_ssdt_with(
        &config,
        &layout,
        &SsdtOptions {
            fit_method: false,
            ..Default::default()
        },
    );
    assert!(!contains(&without, b"_FIT"));
}

#[test]
fn dimm_names() {
    assert_eq!(dimm_device_name(0), "NV00");
    assert_eq!(dimm_device_name(31), "NV1F");
}
