use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::{DimmConfig, PlatformConfig};
use crate::dsm::INTEL_UUID;
use crate::events::{NotifyTarget, NOTIFY_DIMM_HEALTH};
use crate::health::{Alarms, HealthState, SmartHealth, Temperature};
use crate::layout::{DimmPlacement, PlatformLayout};
use crate::mailbox::DsmRequest;
use crate::platform::NvdimmPlatform;

const ST_OK: u32 = intel_status::SUCCESS;
const ST_UNSUPPORTED: u32 = intel_status::NOT_SUPPORTED;
const ST_INVALID: u32 = intel_status::INVALID_INPUT;

fn platform_with(configure: impl FnOnce(&mut PlatformConfig)) -> NvdimmPlatform {
    let mut config = PlatformConfig::default_in(Path::new("/nonexistent-ephemeral"));
    configure(&mut config);
    let layout = PlatformLayout::example(&config);
    NvdimmPlatform::ephemeral(config, layout).unwrap()
}

fn platform() -> NvdimmPlatform {
    platform_with(|_| {})
}

fn handle(p: &NvdimmPlatform) -> u32 {
    p.dimms()[0].handle()
}

fn call(p: &mut NvdimmPlatform, function: u32, revision: u32, input: &[u8]) -> Vec<u8> {
    let request = DsmRequest { handle: handle(p), uuid: INTEL_UUID, revision, function, input: input.to_vec() };
    p.call_dsm(&request)
}

fn status(out: &[u8]) -> u32 {
    u32::from_le_bytes(out[..4].try_into().unwrap())
}

fn get_label_input(offset: u32, len: u32) -> Vec<u8> {
    [offset.to_le_bytes(), len.to_le_bytes()].concat()
}

fn set_label_input(offset: u32, data: &[u8]) -> Vec<u8> {
    [&offset.to_le_bytes()[..], &(data.len() as u32).to_le_bytes(), data].concat()
}

fn mask(out: &[u8]) -> u64 {
    out.iter().enumerate().fold(0, |m, (i, b)| m | (u64::from(*b) << (8 * i)))
}

#[test]
fn function_zero_answers_both_revisions_like_linux_probes() {
    let mut p = platform();
    let rev1 = mask(&call(&mut p, 0, 1, &[]));
    let rev2 = mask(&call(&mut p, 0, 2, &[]));
    assert_eq!(rev1, 1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 10);
    let security = (19..=28).fold(0u64, |m, f| m | 1 << f);
    let firmware = (12..=16).fold(0u64, |m, f| m | 1 << f) | 1 << 29 | 1 << 30;
    assert_eq!(rev2, 1 | 1 << 17 | 1 << 18 | security | firmware);
    // Linux's probe: function f is present iff function 0 at revision_for(f) has bit 0 and bit f.
    let probed: u64 = (1..=30u32)
        .filter(|&f| {
            let m = mask(&call(&mut p, 0, revision_for(f), &[]));
            m & 1 != 0 && m & (1 << f) != 0
        })
        .fold(0, |m, f| m | 1 << f);
    assert_eq!(probed, 0x6047e | security | firmware, "nmemX/nfit/dsm_mask: 1-6, 10, 12-30");
    assert_eq!(call(&mut p, 0, 3, &[]), vec![0], "unknown revision lists nothing");
}

#[test]
fn label_less_dimm_does_not_offer_label_functions() {
    let mut p = platform_with(|c| c.dimms[0].label_size = 0);
    let rev1 = mask(&call(&mut p, 0, 1, &[]));
    assert_eq!(rev1 & (1 << 4 | 1 << 5 | 1 << 6), 0);
    assert_ne!(rev1 & 1 << 1, 0);
    for f in 4..=6 {
        assert_eq!(status(&call(&mut p, f, 1, &get_label_input(0, 0))), ST_UNSUPPORTED);
    }
}

#[test]
fn read_only_dimm_reads_labels_but_refuses_writes() {
    let mut p = platform_with(|c| c.dimms[0].readonly = true);
    let rev1 = mask(&call(&mut p, 0, 1, &[]));
    assert_eq!(rev1 & (1 << 4 | 1 << 5 | 1 << 6), 1 << 4 | 1 << 5);
    assert_eq!(status(&call(&mut p, 6, 1, &set_label_input(0, b"x"))), ST_UNSUPPORTED);
    assert_eq!(status(&call(&mut p, 5, 1, &get_label_input(0, 16))), ST_OK);
}

#[test]
fn label_size_reports_area_and_max_transfer() {
    let mut p = platform();
    let out = call(&mut p, 4, 1, &[]);
    assert_eq!(out.len(), 12);
    assert_eq!(status(&out), ST_OK);
    assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 128 << 10);
    assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), 4088);
    // A full set-label call fits the mailbox input.
    assert_eq!(8 + MAX_LABEL_TRANSFER as usize, crate::mailbox::MAX_INPUT);
}

#[test]
fn set_label_then_get_label_returns_the_same_bytes() {
    let mut p = platform();
    let data: Vec<u8> = (0..MAX_LABEL_TRANSFER).map(|i| (i * 7 + 3) as u8).collect();
    let out = call(&mut p, 6, 1, &set_label_input(0x1000, &data));
    assert_eq!(out, ST_OK.to_le_bytes());
    let out = call(&mut p, 5, 1, &get_label_input(0x1000, MAX_LABEL_TRANSFER));
    assert_eq!(out.len(), 4 + data.len());
    assert_eq!(status(&out), ST_OK);
    assert_eq!(&out[4..], &data[..]);
    assert_eq!(&p.dimms()[0].labels[0x1000..0x1000 + data.len()], &data[..]);
}

#[test]
fn chunked_read_of_the_whole_area_matches() {
    let mut p = platform();
    let area = crate::labels::fresh_area(128 << 10, crate::labels::LabelVersion::V1_1).unwrap();
    p.dimm_mut(0).unwrap().labels.copy_from_slice(&area);
    let mut read = Vec::new();
    let mut offset = 0u32;
    while (offset as usize) < area.len() {
        let len = MAX_LABEL_TRANSFER.min(area.len() as u32 - offset);
        let out = call(&mut p, 5, 1, &get_label_input(offset, len));
        assert_eq!(status(&out), ST_OK, "offset {offset}");
        assert_eq!(out.len(), 4 + len as usize);
        read.extend_from_slice(&out[4..]);
        offset += len;
    }
    assert_eq!(read, area);
    assert!(crate::labels::validate(&read).is_ok());
}

#[test]
fn label_bounds_and_short_inputs_are_invalid_input() {
    let mut p = platform();
    let area = 128u32 << 10;
    let cases: Vec<(u32, Vec<u8>)> = vec![
        (5, get_label_input(area - 4, 8)),               // past the end
        (5, get_label_input(0, MAX_LABEL_TRANSFER + 1)), // over max transfer
        (5, get_label_input(u32::MAX, 2)),               // offset overflow
        (5, vec![0, 0, 0, 0, 16, 0, 0]),                 // 7-byte header
        (5, vec![]),
        (6, set_label_input(area - 1, &[1, 2])),                // past the end
        (6, [&get_label_input(0, 4)[..], &[1, 2, 3]].concat()), // fewer data bytes than length
        (6, [&get_label_input(0, 2)[..], &[1, 2, 3]].concat()), // more data bytes than length
        (6, vec![1, 2, 3]),
        (10, vec![]),
        (10, vec![2]),
        (17, vec![0; 6]),
        (17, vec![0x08, 0, 0, 0, 0, 0, 0]), // undefined alarm bit
        (18, vec![0; 14]),
    ];
    for (function, input) in cases {
        let out = call(&mut p, function, revision_for(function), &input);
        assert_eq!(out, ST_INVALID.to_le_bytes(), "function {function} input {input:?}");
    }
    assert!(p.dimms()[0].labels.iter().all(|&b| b == 0), "no partial writes");
    // Zero-length reads at the end are fine.
    assert_eq!(call(&mut p, 5, 1, &get_label_input(area, 0)), ST_OK.to_le_bytes());
}

#[test]
fn wrong_revision_and_unknown_functions_are_not_supported() {
    let mut p = platform();
    for (function, revision) in [
        (1, 2),
        (5, 2),
        (17, 1),
        (18, 1),
        (12, 1),
        (1, 0),
        (7, 1),
        (8, 1),
        (9, 1),
        (11, 2),
        (13, 1),
        (19, 1),
        (29, 1),
        (31, 1),
        (64, 1),
        (u32::MAX, 2),
    ] {
        let out = call(&mut p, function, revision, &[0; 16]);
        assert_eq!(out, ST_UNSUPPORTED.to_le_bytes(), "function {function} revision {revision}");
    }
}

#[test]
fn smart_values_set_by_host_come_back_at_exact_offsets() {
    let mut p = platform();
    let health = SmartHealth {
        state: HealthState::Critical,
        spares_percent: 33,
        life_used_percent: 12,
        media_temperature: Temperature::from_celsius_f64(41.5).unwrap(),
        controller_temperature: Temperature::from_celsius_f64(-2.0).unwrap(),
        unsafe_shutdown_count: 9,
        last_shutdown_state: 1,
        vendor_data: vec![0xee; 4],
        ..SmartHealth::default()
    };
    let events = p.dimm_mut(0).unwrap().set_health(health).unwrap();
    assert_eq!(
        events,
        vec![Notification { target: NotifyTarget::Dimm { handle: handle(&p) }, code: NOTIFY_DIMM_HEALTH }]
    );
    let out = call(&mut p, 1, 1, &[]);
    assert_eq!(out.len(), 132);
    assert_eq!(status(&out), ST_OK);
    let flags = u32::from_le_bytes(out[4..8].try_into().unwrap());
    assert_eq!(flags & 0x6bf, 0x6bf, "every field ndctl prints is valid");
    assert_eq!(out[12], 2);
    assert_eq!(out[13], 33);
    assert_eq!(out[14], 12);
    assert_eq!(u16::from_le_bytes([out[16], out[17]]), 41 * 16 + 8);
    assert_eq!(u16::from_le_bytes([out[18], out[19]]), 0x8000 | 32);
    assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 9);
    assert_eq!(out[35], 1);
    assert_eq!(u32::from_le_bytes(out[36..40].try_into().unwrap()), 4);
    assert_eq!(&out[40..44], &[0xee; 4]);
}

#[test]
fn thresholds_round_trip_through_f17_and_f2() {
    let mut p = platform();
    let input = [0x07, 0x00, 20, 0x80, 0x02, 0x90, 0x01]; // all alarms, 20%, 40 degC, 25 degC
    assert_eq!(call(&mut p, 17, 2, &input), ST_OK.to_le_bytes());
    let out = call(&mut p, 2, 1, &[]);
    assert_eq!(out.len(), 12);
    assert_eq!(status(&out), ST_OK);
    assert_eq!(&out[4..11], &input);
    // The default 35 degC controller temperature is above the new 25 degC threshold.
    let smart = call(&mut p, 1, 1, &[]);
    assert_eq!(smart[15], Alarms::CONTROLLER_TEMPERATURE);
    assert_eq!(p.take_notifications().len(), 1, "a tripped alarm is a health event");
}

#[test]
fn smart_injection_is_visible_in_f1_and_uninjects() {
    let mut p = platform();
    let inject = |flags: u64, bytes: [u8; 7]| -> Vec<u8> { [&flags.to_le_bytes()[..], &bytes].concat() };
    let media = (77u16 * 16).to_le_bytes();
    assert_eq!(call(&mut p, 18, 2, &inject(1, [1, media[0], media[1], 0, 0, 0, 0])), ST_OK.to_le_bytes());
    assert_eq!(call(&mut p, 18, 2, &inject(2, [0, 0, 0, 1, 4, 0, 0])), ST_OK.to_le_bytes());
    assert_eq!(call(&mut p, 18, 2, &inject(4, [0, 0, 0, 0, 0, 1, 0])), ST_OK.to_le_bytes());
    assert_eq!(call(&mut p, 18, 2, &inject(8, [0, 0, 0, 0, 0, 0, 1])), ST_OK.to_le_bytes());
    let out = call(&mut p, 1, 1, &[]);
    assert_eq!(u16::from_le_bytes([out[16], out[17]]), 77 * 16);
    assert_eq!(out[13], 4);
    assert_eq!(out[12], HealthState::Fatal.bits());
    assert_eq!(out[35], 1);
    assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 1);
    let events = p.take_notifications();
    assert!(!events.is_empty() && events.iter().all(|n| n.code == NOTIFY_DIMM_HEALTH));

    // ndctl inject-smart --uninject-all: every flag with enable 0.
    for flag in [1u64, 2, 4, 8] {
        assert_eq!(call(&mut p, 18, 2, &inject(flag, [0; 7])), ST_OK.to_le_bytes());
    }
    let out = call(&mut p, 1, 1, &[]);
    assert_eq!(&out[..], &p.dimms()[0].state.health.encode()[..], "back to the host's values");
    assert_eq!(out[12], 0);
    assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 1, "the count stays");
}

#[test]
fn block_flags_latch_and_firmware_info() {
    let mut p = platform();
    assert_eq!(call(&mut p, 3, 1, &[]), [0u8; 8]);
    assert_eq!(call(&mut p, 10, 1, &[0]), ST_OK.to_le_bytes());
    assert!(!p.dimms()[0].state.latch_shutdown_status);
    assert_eq!(call(&mut p, 10, 1, &[1]), ST_OK.to_le_bytes());
    assert!(p.dimms()[0].state.latch_shutdown_status);
    let fw = call(&mut p, 12, 2, &[]);
    assert_eq!(fw.len(), crate::dsm_firmware::FIRMWARE_INFO_SIZE);
    assert_eq!(status(&fw), ST_OK);
    assert_eq!(u64::from_le_bytes(fw[28..36].try_into().unwrap()), crate::firmware::FACTORY_VERSION);
}

#[test]
fn set_label_on_a_persistent_dimm_is_durable_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.img");
    std::fs::File::create(&path).unwrap().set_len(16 << 20).unwrap();
    let config = DimmConfig::with_defaults(0, path.clone(), 16 << 20);
    let mut dimm = Dimm::open(config.clone(), DimmPlacement { spa_base: 4 << 30, flush_hints: vec![] }).unwrap();
    let mut events = Vec::new();
    let out = call_direct(&mut dimm, 6, 1, &set_label_input(256, b"persisted"), &mut events);
    assert_eq!(out, ST_OK.to_le_bytes());
    let on_disk = std::fs::read(crate::persist::SidecarPaths::for_backing_file(&path).labels).unwrap();
    assert_eq!(&on_disk[256..265], b"persisted");
}

fn call_direct(dimm: &mut Dimm, f: u32, rev: u32, input: &[u8], n: &mut Vec<Notification>) -> Vec<u8> {
    super::call(dimm, f, rev, input, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn hostile_calls_never_panic(
        function in prop_oneof![0u32..=32, any::<u32>()],
        revision in prop_oneof![0u32..=3, any::<u32>()],
        input in prop::collection::vec(any::<u8>(), 0..64),
        big in any::<bool>(),
    ) {
        let mut p = platform();
        let input = if big { input.repeat(70) } else { input };
        let out = call(&mut p, function, revision, &input);
        prop_assert!(!out.is_empty() && out.len() <= crate::mailbox::MAX_OUTPUT);
        if function != 0 {
            prop_assert!(out.len() >= 4);
        }
    }
}
