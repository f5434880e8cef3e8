//! Firmware update and activation through the platform's `_DSM` entry, as ndctl drives
//! them: info, start, send in chunks, finish, query; arm and the bus-level activate;
//! the staged image running after a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::config::{DimmConfig, FirmwareActivation, PersistenceDomain, MIB};
use crate::dsm::{INTEL_UUID, ROOT_UUID};
use crate::firmware::{build_image, status, FirmwareFault, FACTORY_VERSION};
use crate::mailbox::DsmRequest;
use crate::{NvdimmPlatform, PlatformConfig, PlatformLayout};

fn open(path: &Path, activation: FirmwareActivation, clock: Arc<ManualClock>) -> NvdimmPlatform {
    let mut config = PlatformConfig::new(vec![DimmConfig::with_defaults(0, path.to_path_buf(), 16 * MIB)], PersistenceDomain::CpuCache).unwrap();
    config.firmware_activation = activation;
    let layout = PlatformLayout::example(&config);
    NvdimmPlatform::open(config, layout, clock).unwrap()
}

/// A sparse 16 MiB backing file in a directory that lives as long as the guard.
fn backing_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.img");
    std::fs::File::create(&path).unwrap().set_len(16 * MIB).unwrap();
    (dir, path)
}

fn dimm_call(p: &mut NvdimmPlatform, function: u32, input: &[u8]) -> Vec<u8> {
    let handle = p.dimms()[0].handle();
    p.call_dsm(&DsmRequest { handle, uuid: INTEL_UUID, revision: 2, function, input: input.to_vec() })
}

fn bus_call(p: &mut NvdimmPlatform, function: u32, input: &[u8]) -> Vec<u8> {
    p.call_dsm(&DsmRequest { handle: 0, uuid: INTEL_BUS_UUID, revision: 1, function, input: input.to_vec() })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// ndctl update-firmware's sequence; returns the context and finish status.
fn upload(p: &mut NvdimmPlatform, image: &[u8]) -> (u32, u32) {
    let info = dimm_call(p, FN_FIRMWARE_INFO, &[]);
    let max_send = u32_at(&info, 8) as usize;
    let start = dimm_call(p, FN_START_UPDATE, &[]);
    assert_eq!(u32_at(&start, 0), 0);
    let context = u32_at(&start, 4);
    for (i, chunk) in image.chunks(max_send).enumerate() {
        let mut input = context.to_le_bytes().to_vec();
        input.extend(((i * max_send) as u32).to_le_bytes());
        input.extend((chunk.len() as u32).to_le_bytes());
        input.extend(chunk);
        assert_eq!(u32_at(&dimm_call(p, FN_SEND_DATA, &input), 0), 0);
    }
    let mut finish = vec![0, 0, 0, 0];
    finish.extend(context.to_le_bytes());
    (context, u32_at(&dimm_call(p, FN_FINISH_UPDATE, &finish), 0))
}

fn query(p: &mut NvdimmPlatform, context: u32) -> (u32, u64) {
    let out = dimm_call(p, FN_QUERY_FINISH, &context.to_le_bytes());
    (u32_at(&out, 0), u64_at(&out, 4))
}

#[test]
fn an_image_sent_in_chunks_is_staged_and_runs_after_a_restart() {
    let (_dir, path) = backing_file();
    let clock = Arc::new(ManualClock::default());
    let mut p = open(&path, FirmwareActivation::NextBoot, clock.clone());
    let info = dimm_call(&mut p, FN_FIRMWARE_INFO, &[]);
    assert_eq!((info.len(), u64_at(&info, 28), u64_at(&info, 36)), (FIRMWARE_INFO_SIZE, FACTORY_VERSION, 0));
    let image = build_image(0x0002_0000_0000_0001, &vec![7u8; 20_000]);
    let (context, finished) = upload(&mut p, &image);
    assert_eq!(finished, 0);
    assert_eq!(query(&mut p, context).0, status::DONE_OR_VERIFYING, "verifying");
    clock.advance(Duration::from_secs(1));
    assert_eq!(query(&mut p, context), (0, 0x0002_0000_0000_0001));
    assert_eq!(u64_at(&dimm_call(&mut p, FN_FIRMWARE_INFO, &[]), 36), 0x0002_0000_0000_0001, "next version");
    drop(p);
    let mut p = open(&path, FirmwareActivation::NextBoot, clock);
    let info = dimm_call(&mut p, FN_FIRMWARE_INFO, &[]);
    assert_eq!((u64_at(&info, 28), u64_at(&info, 36)), (0x0002_0000_0000_0001, 0), "running after the restart");
}

#[test]
fn live_activation_arms_activates_and_reports_per_dimm() {
    let (_dir, path) = backing_file();
    let clock = Arc::new(ManualClock::default());
    let mut p = open(&path, FirmwareActivation::Live, clock.clone());
    assert_eq!(bus_call(&mut p, 0, &[]), crate::dsm::function_mask(0b111));
    assert_eq!(u32_at(&bus_call(&mut p, BUS_FN_ACTIVATE, &[0]), 0), activation::BUS_NO_ARM);
    let (context, _) = upload(&mut p, &build_image(42, b"fw"));
    clock.advance(Duration::from_secs(1));
    query(&mut p, context);
    assert_eq!(u32_at(&dimm_call(&mut p, FN_ACTIVATE_ARM, &[1]), 0), 0);
    let info = bus_call(&mut p, BUS_FN_ACTIVATE_INFO, &[]);
    assert_eq!((info.len(), info[6], info[7]), (40, activation::STATE_ARMED, 1 << 1));
    assert_eq!(u32_at(&bus_call(&mut p, BUS_FN_ACTIVATE, &[0]), 0), 0);
    let dimm = dimm_call(&mut p, FN_ACTIVATE_DIMM_INFO, &[]);
    assert_eq!((u16::from_le_bytes([dimm[4], dimm[5]]), dimm[6]), (activation::RESULT_SUCCESS, activation::STATE_IDLE));
    assert_eq!(u64_at(&dimm_call(&mut p, FN_FIRMWARE_INFO, &[]), 28), 42, "running now");
    drop(p);
    let mut p = open(&path, FirmwareActivation::Live, Arc::new(ManualClock::default()));
    assert_eq!(u64_at(&dimm_call(&mut p, FN_FIRMWARE_INFO, &[]), 28), 42, "and persisted");
}

#[test]
fn host_provoked_failures_reach_the_guest() {
    let (_dir, path) = backing_file();
    let clock = Arc::new(ManualClock::default());
    let mut p = open(&path, FirmwareActivation::Live, clock.clone());
    p.dimm_mut(0).unwrap().firmware_session.fault = Some(FirmwareFault::BadImage);
    assert_eq!(upload(&mut p, &build_image(5, b"x")).1, status::BAD_IMAGE);
    p.dimm_mut(0).unwrap().firmware_session.fault = Some(FirmwareFault::Busy);
    assert_eq!(u32_at(&dimm_call(&mut p, FN_START_UPDATE, &[]), 0), status::BUSY_OR_BAD_CONTEXT);
    let (context, _) = upload(&mut p, &build_image(6, b"x"));
    clock.advance(Duration::from_secs(1));
    query(&mut p, context);
    p.dimm_mut(0).unwrap().firmware_session.fault = Some(FirmwareFault::Activation);
    dimm_call(&mut p, FN_ACTIVATE_ARM, &[1]);
    assert_eq!(u32_at(&bus_call(&mut p, BUS_FN_ACTIVATE, &[0]), 0), activation::BUS_ABORT);
    let dimm = dimm_call(&mut p, FN_ACTIVATE_DIMM_INFO, &[]);
    assert_eq!(u16::from_le_bytes([dimm[4], dimm[5]]), activation::RESULT_ERROR);
}

#[test]
fn next_boot_platforms_offer_no_activation_functions_and_lengths_are_strict() {
    let (_dir, path) = backing_file();
    let mut p = open(&path, FirmwareActivation::NextBoot, Arc::new(ManualClock::default()));
    assert_eq!(u32_at(&dimm_call(&mut p, FN_ACTIVATE_ARM, &[1]), 0), crate::dsm::intel_status::NOT_SUPPORTED);
    let unknown = p.call_dsm(&DsmRequest { handle: 0, uuid: INTEL_BUS_UUID, revision: 1, function: 0, input: vec![] });
    assert_eq!(unknown, crate::dsm::no_functions());
    for (function, len) in [(12, 1), (13, 4), (14, 11), (15, 7), (15, 9), (16, 3), (16, 5)] {
        let out = dimm_call(&mut p, function, &vec![0; len]);
        assert_eq!(u32_at(&out, 0), crate::dsm::intel_status::INVALID_INPUT, "function {function} with {len} bytes");
    }
    // A send whose length field disagrees with the data.
    let mut input = 1u32.to_le_bytes().to_vec();
    input.extend(0u32.to_le_bytes());
    input.extend(100u32.to_le_bytes());
    input.extend([0; 10]);
    assert_eq!(u32_at(&dimm_call(&mut p, 14, &input), 0), crate::dsm::intel_status::INVALID_INPUT);
    let root = p.call_dsm(&DsmRequest { handle: 0, uuid: ROOT_UUID, revision: 1, function: 0, input: vec![] });
    assert_ne!(root, crate::dsm::no_functions(), "the root family is still there");
}
