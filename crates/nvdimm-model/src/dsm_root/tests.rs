//! Root `_DSM` tests through `NvdimmPlatform::call_dsm`, with a manual clock.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ars::{ext_status, RECORDS_PER_PAGE, STATUS_OVERFLOW};
use crate::clock::ManualClock;
use crate::config::GIB;
use crate::dsm::ROOT_UUID;
use crate::events::NotifyTarget;
use crate::mailbox::DsmRequest;
use crate::{NvdimmPlatform, PlatformConfig, PlatformLayout};

const W0: u64 = 4 << 30;
const W1: u64 = 5 << 30;

fn platform() -> (NvdimmPlatform, Arc<ManualClock>) {
    let config = PlatformConfig::default_in(Path::new("/nonexistent"));
    let layout = PlatformLayout::example(&config);
    let clock = Arc::new(ManualClock::default());
    let p = NvdimmPlatform::ephemeral_with_clock(config, layout, clock.clone()).unwrap();
    assert_eq!(p.dimms()[0].spa_range(), W0..W0 + GIB);
    assert_eq!(p.dimms()[1].spa_range(), W1..W1 + GIB);
    (p, clock)
}

fn root_rev(p: &mut NvdimmPlatform, function: u32, revision: u32, input: &[u8]) -> Vec<u8> {
    p.call_dsm(&DsmRequest { handle: 0, uuid: ROOT_UUID, revision, function, input: input.to_vec() })
}

fn root(p: &mut NvdimmPlatform, function: u32, input: &[u8]) -> Vec<u8> {
    root_rev(p, function, 1, input)
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

fn range(spa: u64, len: u64) -> Vec<u8> {
    Output::new().u64(spa).u64(len).finish()
}

fn start_input(spa: u64, len: u64, ars_type: u16, flags: u8) -> Vec<u8> {
    Output::new().u64(spa).u64(len).u16(ars_type).u8(flags).zeros(5).finish()
}

/// Parsed Query ARS Status answer, checked against the length rules Linux applies.
struct Status {
    status: u32,
    spa: u64,
    len: u64,
    restart_spa: u64,
    restart_len: u64,
    ars_type: u16,
    flags: u16,
    records: Vec<(u32, u64, u64)>,
}

fn query(p: &mut NvdimmPlatform) -> Status {
    let out = root(p, ARS_STATUS, &[]);
    assert!(out.len() <= MAX_ARS_OUTPUT, "answer of {} bytes exceeds max ARS output", out.len());
    assert!(out.len() >= 48);
    let out_length = u32_at(&out, 4) as usize;
    // drivers/nvdimm/bus.c nd_cmd_out_size: out_length - 4 must equal the bytes after offset 8.
    assert_eq!(out_length - 4, out.len() - 8);
    let count = u32_at(&out, 44) as usize;
    assert_eq!(out.len(), 48 + 24 * count);
    let records = (0..count)
        .map(|i| {
            let at = 48 + 24 * i;
            assert_eq!(u32_at(&out, at + 4), 0, "reserved");
            (u32_at(&out, at), u64_at(&out, at + 8), u64_at(&out, at + 16))
        })
        .collect();
    Status {
        status: u32_at(&out, 0),
        spa: u64_at(&out, 8),
        len: u64_at(&out, 16),
        restart_spa: u64_at(&out, 24),
        restart_len: u64_at(&out, 32),
        ars_type: u16_at(&out, 40),
        flags: u16_at(&out, 42),
        records,
    }
}

#[test]
fn function_zero_lists_functions_for_revision_one_only() {
    let (mut p, _) = platform();
    assert_eq!(root(&mut p, 0, &[]), vec![0xbf, 0x03]);
    assert_eq!(root_rev(&mut p, 0, 2, &[]), vec![0]);
    assert_eq!(root_rev(&mut p, 0, 0, &[]), vec![0]);
    for function in [6, 10, 31, 63, 64, 1000, u32::MAX] {
        assert_eq!(root(&mut p, function, &[0; 32]), status_only(NOT_SUPPORTED), "function {function}");
    }
    assert_eq!(root_rev(&mut p, ARS_CAP, 2, &range(W0, GIB)), status_only(NOT_SUPPORTED));
}

#[test]
fn ars_capabilities_bytes() {
    let (mut p, _) = platform();
    let out = root(&mut p, ARS_CAP, &range(W1, GIB));
    assert_eq!(out, vec![0, 0, 2, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0]);
    for bad in [range(W0, 2 * GIB), range(W0 - 4096, 8192), range(0, 4096), range(W0, 0), W0.to_le_bytes().to_vec()] {
        let out = root(&mut p, ARS_CAP, &bad);
        assert_eq!(out.len(), 16);
        assert_eq!(u32_at(&out, 0), INVALID_INPUT);
    }
}

#[test]
fn status_before_any_scrub_is_none_this_boot() {
    let (mut p, _) = platform();
    let s = query(&mut p);
    assert_eq!(s.status, ext_status::NONE_THIS_BOOT);
    assert!(s.records.is_empty());
}

#[test]
fn full_scrub_is_in_progress_then_reports_poison() {
    let (mut p, clock) = platform();
    p.add_poison(0, 0x1000, 0x200).unwrap();
    p.add_poison(0, GIB - 256, 256).unwrap();
    p.add_poison(1, 0x4000, 0x100).unwrap();
    // 1 GiB at the default 2 GiB/s: 0.5 s, reported rounded up to 1 s.
    assert_eq!(root(&mut p, ARS_START, &start_input(W0, GIB, 2, 0)), vec![0, 0, 0, 0, 1, 0, 0, 0]);
    let s = query(&mut p);
    assert_eq!(s.status, ext_status::IN_PROGRESS);
    assert_eq!((s.spa, s.len), (W0, GIB));
    assert!(s.records.is_empty());
    assert_eq!(u32_at(&root(&mut p, ARS_START, &start_input(W0, GIB, 2, 0)), 0), FUNCTION_SPECIFIC);
    clock.advance(Duration::from_millis(499));
    assert_eq!(query(&mut p).status, ext_status::IN_PROGRESS);
    clock.advance(Duration::from_millis(1));
    let s = query(&mut p);
    assert_eq!(s.status, ext_status::DONE);
    assert_eq!((s.spa, s.len, s.ars_type, s.flags), (W0, GIB, 2, 0));
    assert_eq!(s.records, vec![(0x01, W0 + 0x1000, 0x200), (0x01, W0 + GIB - 256, 256)]);
    // The result stays until the next start.
    assert_eq!(query(&mut p).records.len(), 2);
}

#[test]
fn short_scrub_completes_at_once_and_clips_to_the_range() {
    let (mut p, _) = platform();
    p.add_poison(1, 0x0f00, 0x200).unwrap();
    let out = root(&mut p, ARS_START, &start_input(W1 + 0x1000, 0x1000, 2, ars::START_RETURN_PREV_DATA));
    assert_eq!(out, vec![0; 8]);
    let s = query(&mut p);
    assert_eq!(s.status, ext_status::DONE);
    assert_eq!(s.records, vec![(0x11, W1 + 0x1000, 0x100)]);
}

#[test]
fn start_refuses_bad_input() {
    let (mut p, _) = platform();
    let cases = [
        start_input(W0, GIB, 1, 0),               // volatile only
        start_input(W0, 0, 2, 0),                 // empty
        start_input(W0 + GIB - 4096, 8192, 2, 0), // straddles two windows
        start_input(u64::MAX - 100, 4096, 2, 0),  // wraps
        start_input(W0, u64::MAX, 2, 0),
        start_input(W0, GIB, 2, 0)[..23].to_vec(), // short
    ];
    for input in cases {
        assert_eq!(root(&mut p, ARS_START, &input), vec![2, 0, 0, 0, 0, 0, 0, 0]);
    }
    assert_eq!(query(&mut p).status, ext_status::NONE_THIS_BOOT);
}

/// Mirrors Linux's loop (acpi_nfit_scrub -> ars_continue): on "stopped early" with the
/// overflow flag, start a scrub of the restart range with the same type and no flags.
fn linux_scrub(
    p: &mut NvdimmPlatform,
    clock: &ManualClock,
    spa: u64,
    len: u64,
    short: bool,
) -> (Vec<(u32, u64, u64)>, usize) {
    let flags = if short { ars::START_RETURN_PREV_DATA } else { 0 };
    assert_eq!(u32_at(&root(p, ARS_START, &start_input(spa, len, 2, flags)), 0), SUCCESS);
    let mut records = Vec::new();
    let mut pages = 0;
    loop {
        let s = query(p);
        if s.status == ext_status::IN_PROGRESS {
            clock.advance(Duration::from_secs(1));
            continue;
        }
        pages += 1;
        records.extend(s.records.iter().copied());
        if s.status == ext_status::STOPPED_EARLY && s.flags & STATUS_OVERFLOW != 0 {
            assert_eq!(s.records.len(), RECORDS_PER_PAGE);
            assert_eq!(s.restart_spa + s.restart_len, spa + len);
            assert_eq!(s.spa + s.len, s.restart_spa);
            assert!(s.restart_spa > s.spa);
            let next = start_input(s.restart_spa, s.restart_len, s.ars_type, 0);
            assert_eq!(u32_at(&root(p, ARS_START, &next), 0), SUCCESS);
            continue;
        }
        assert_eq!(s.status, ext_status::DONE);
        assert_eq!(s.flags, 0);
        return (records, pages);
    }
}

#[test]
fn overflow_pages_cover_the_poison_set_exactly() {
    let (mut p, clock) = platform();
    // 1,000 ranges of varied sizes and gaps, all in DIMM 1.
    for i in 0..1000u64 {
        p.add_poison(1, i * 0x10_0000 + (i % 7) * 512, 256 * (1 + i % 5)).unwrap();
    }
    for short in [false, true] {
        let (records, pages) = linux_scrub(&mut p, &clock, W1, GIB, short);
        assert_eq!(pages, 1000usize.div_ceil(RECORDS_PER_PAGE));
        assert!(records.windows(2).all(|w| w[0].1 + w[0].2 < w[1].1), "records in SPA order, disjoint");
        assert!(records.iter().all(|r| r.0 == 0x11));
        let got: Vec<(u64, u64)> = records.iter().map(|&(_, spa, len)| (spa - W1, len)).collect();
        assert_eq!(got, p.poison_ranges(1).unwrap());
    }
    // Exactly one page's worth fits without overflow.
    let (mut p, clock) = platform();
    for i in 0..RECORDS_PER_PAGE as u64 {
        p.add_poison(0, i * 4096, 256).unwrap();
    }
    assert_eq!(linux_scrub(&mut p, &clock, W0, GIB, false).1, 1);
    p.add_poison(0, GIB - 256, 256).unwrap();
    assert_eq!(linux_scrub(&mut p, &clock, W0, GIB, false).1, 2);
}

#[test]
fn clear_error_honours_the_unit() {
    let (mut p, _) = platform();
    p.add_poison(1, 0, 1024).unwrap();
    let out = root(&mut p, CLEAR_ERROR, &range(W1 + 256, 256));
    assert_eq!(out, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.poison_ranges(1).unwrap(), vec![(0, 256), (512, 512)]);
    // Clearing a clean range succeeds with the full length: the range is known good.
    assert_eq!(u64_at(&root(&mut p, CLEAR_ERROR, &range(W1 + 8192, 512)), 8), 512);
    for bad in
        [range(W1 + 1, 256), range(W1, 100), range(W1, 0), range(W0 + GIB - 256, 512), range(u64::MAX - 255, 256)]
    {
        let out = root(&mut p, CLEAR_ERROR, &bad);
        assert_eq!(out.len(), 16);
        assert_eq!((u32_at(&out, 0), u64_at(&out, 8)), (INVALID_INPUT, 0));
    }
    assert_eq!(u32_at(&root(&mut p, CLEAR_ERROR, &range(W1, 256)[..15]), 0), INVALID_INPUT);
    assert_eq!(p.poison_ranges(1).unwrap(), vec![(0, 256), (512, 512)]);
}

#[test]
fn translate_spa_bytes() {
    let (mut p, _) = platform();
    let out = root(&mut p, TRANSLATE_SPA, &(W1 + 0x1234).to_le_bytes());
    let expect = Output::new().u32(0).u8(0).zeros(3).u64(GIB - 0x1234).u32(1).u32(0x11).u32(0).u64(0x1234).finish();
    assert_eq!(out, expect);
    assert_eq!(out.len(), 36);
    for bad in [W0 + 2 * GIB, W0 - 1, 0, u64::MAX] {
        let out = root(&mut p, TRANSLATE_SPA, &bad.to_le_bytes());
        assert_eq!(out.len(), 20);
        assert_eq!(u32_at(&out, 0), INVALID_INPUT);
    }
    assert_eq!(u32_at(&root(&mut p, TRANSLATE_SPA, &[1, 2, 3]), 0), INVALID_INPUT);
}

fn inject_input(spa: u64, len: u64, options: u8) -> Vec<u8> {
    Output::new().u64(spa).u64(len).u8(options).finish()
}

#[test]
fn inject_notify_status_and_clear() {
    let (mut p, _) = platform();
    p.add_poison(0, 0x10_0000, 4096).unwrap();
    p.take_notifications();
    assert_eq!(root(&mut p, INJECT_ERROR, &inject_input(W0 + 512 * 10, 256, 0)), vec![0; 4]);
    assert!(p.take_notifications().is_empty());
    assert_eq!(root(&mut p, INJECT_ERROR, &inject_input(W1 + 512, 256, 1)), vec![0; 4]);
    assert_eq!(p.take_notifications(), vec![Notification { target: NotifyTarget::Root, code: 0x81 }]);
    assert!(p.dimms()[0].state.poison.contains(512 * 10));
    // Only injected ranges are listed, in SPA order; the host-made error is not.
    let out = root(&mut p, INJECT_STATUS, &[]);
    let expect = Output::new().u32(0).u32(2).u64(W0 + 5120).u64(256).u64(W1 + 512).u64(256).finish();
    assert_eq!(out, expect);
    // Inject Clear removes injected errors only.
    assert_eq!(root(&mut p, INJECT_CLEAR, &range(W0, GIB)), vec![0; 4]);
    assert_eq!(p.poison_ranges(0).unwrap(), vec![(0x10_0000, 4096)]);
    assert_eq!(root(&mut p, INJECT_STATUS, &[]), Output::new().u32(0).u32(1).u64(W1 + 512).u64(256).finish());
    // A clear by the guest (F4) or the host also drops the injected record.
    p.clear_poison(1, 0, 4096).unwrap();
    assert_eq!(root(&mut p, INJECT_STATUS, &[]), vec![0; 8]);
}

#[test]
fn inject_refuses_bad_input() {
    let (mut p, _) = platform();
    for bad in [
        inject_input(W0, 0, 0),
        inject_input(W0 + GIB - 1, 2, 0),
        inject_input(u64::MAX, 1, 0),
        inject_input(W0, 256, 0)[..16].to_vec(),
        inject_input(1, 1, 1),
    ] {
        assert_eq!(root(&mut p, INJECT_ERROR, &bad), status_only(INVALID_INPUT));
    }
    assert_eq!(root(&mut p, INJECT_CLEAR, &range(W0, 0)), status_only(INVALID_INPUT));
    assert_eq!(root(&mut p, INJECT_CLEAR, &[0; 15]), status_only(INVALID_INPUT));
    assert!(p.take_notifications().is_empty());
    assert!(p.poison_ranges(0).unwrap().is_empty());
}

#[test]
fn inject_status_is_bounded_by_the_output_size() {
    let (mut p, _) = platform();
    for i in 0..400u64 {
        assert_eq!(root(&mut p, INJECT_ERROR, &inject_input(W0 + i * 1024, 256, 0)), vec![0; 4]);
    }
    let out = root(&mut p, INJECT_STATUS, &[]);
    assert_eq!(u32_at(&out, 4) as usize, INJECT_RECORDS_MAX);
    assert_eq!(out.len(), 8 + 16 * INJECT_RECORDS_MAX);
    assert!(out.len() <= MAX_ARS_OUTPUT);
}

#[test]
fn scrub_rate_sets_the_duration() {
    let (mut p, clock) = platform();
    p.set_ars_rate(GIB / 8).unwrap();
    assert_eq!(u32_at(&root(&mut p, ARS_START, &start_input(W0, GIB, 2, 0)), 4), 8);
    clock.advance(Duration::from_millis(7_999));
    assert_eq!(query(&mut p).status, ext_status::IN_PROGRESS);
    clock.advance(Duration::from_millis(1));
    assert_eq!(query(&mut p).status, ext_status::DONE);
}

#[test]
fn hostile_inputs_never_panic() {
    let (mut p, _) = platform();
    let spas = [0, W0 - 1, W0, W0 + GIB - 1, W1 + GIB, u64::MAX - 7, u64::MAX];
    let lens = [0, 1, 255, 256, GIB, u64::MAX - W0, u64::MAX];
    for function in 0..12 {
        for len in 0..40 {
            let out = root(&mut p, function, &vec![0xff; len]);
            assert!(!out.is_empty());
        }
        for &spa in &spas {
            for &l in &lens {
                let input = start_input(spa, l, 0xffff, 0xff);
                let out = root(&mut p, function, &input);
                assert!(!out.is_empty() && out.len() <= MAX_ARS_OUTPUT);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_calls_never_panic(
        calls in proptest::collection::vec(
            (prop_oneof![0u32..12, any::<u32>()], prop_oneof![Just(1u32), any::<u32>()],
             proptest::collection::vec(any::<u8>(), 0..48), 0u64..3_000_000_000),
            1..20)
    ) {
        let (mut p, clock) = platform();
        for (function, revision, input, advance_ns) in calls {
            clock.advance(Duration::from_nanos(advance_ns));
            let out = root_rev(&mut p, function, revision, &input);
            prop_assert!(!out.is_empty() && out.len() <= MAX_ARS_OUTPUT);
        }
        // Whatever the guest did, each DIMM's poison stays inside the DIMM.
        for d in p.dimms() {
            if let Some((s, l)) = d.state.poison.iter().last() {
                prop_assert!(s + l <= d.config.size);
            }
        }
    }

    #[test]
    fn structured_calls_near_windows_never_panic(
        calls in proptest::collection::vec(
            (1u32..10, prop_oneof![Just(W0), Just(W1), Just(W0 + GIB), Just(u64::MAX)],
             any::<i32>(), prop_oneof![Just(0u64), 1u64..8192, Just(GIB), Just(u64::MAX)], any::<u16>(), any::<u8>()),
            1..30)
    ) {
        let (mut p, clock) = platform();
        for (function, base, delta, len, ars_type, flags) in calls {
            let spa = base.wrapping_add(delta as i64 as u64);
            let input = start_input(spa, len, ars_type, flags);
            let out = root(&mut p, function, &input);
            prop_assert!(!out.is_empty() && out.len() <= MAX_ARS_OUTPUT);
            clock.advance(Duration::from_millis(100));
        }
        for d in p.dimms() {
            if let Some((s, l)) = d.state.poison.iter().last() {
                prop_assert!(s + l <= d.config.size);
            }
        }
    }
}

#[test]
fn ranges_must_lie_in_one_window() {
    let (p, _) = platform();
    let map = p.spa_map();
    assert_eq!(map.dimm_spans(W1 + 5, 10), Some(vec![crate::spa_map::DimmSpan { dimm: 1, offset: 5, len: 10 }]));
    assert_eq!(map.window_at(W0 + GIB - 10, 20), None);
    assert_eq!(map.window_at(W0, 0), None);
    assert_eq!(map.window_at(u64::MAX, 1), None);
    let distinct: BTreeSet<_> = [W0, W1].iter().map(|&s| map.locate_byte(s).unwrap().0).collect();
    assert_eq!(distinct.len(), 2);
}
