//! The security functions through the platform's `_DSM` entry, on DIMMs with backing
//! files: what the guest reads, what persists across a power cycle, what erase and
//! overwrite do to the media, and exact input lengths.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::config::{DimmConfig, PersistenceDomain, MIB};
use crate::dsm::INTEL_UUID;
use crate::dsm_intel::{FN_GET_LABEL, FN_LABEL_SIZE, LABELS_LOCKED};
use crate::mailbox::DsmRequest;
use crate::security::{INVALID_PASS, INVALID_STATE, OVERWRITE_IN_PROGRESS};
use crate::{NvdimmPlatform, PlatformConfig, PlatformLayout};

const SIZE: u64 = 16 * MIB;

fn backing(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![0xa5u8; SIZE as usize]).unwrap();
    path
}

fn open(paths: &[PathBuf], sets: &[&str], clock: Arc<ManualClock>) -> NvdimmPlatform {
    let dimms = paths.iter().enumerate().map(|(i, p)| DimmConfig::with_defaults(i, p.clone(), SIZE)).collect();
    let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
    let config = config.with_interleave_sets(&sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let layout = PlatformLayout::example(&config);
    NvdimmPlatform::open(config, layout, clock).unwrap()
}

fn call(p: &mut NvdimmPlatform, dimm: usize, function: u32, input: &[u8]) -> Vec<u8> {
    let handle = p.dimms()[dimm].handle();
    p.call_dsm(&DsmRequest { handle, uuid: INTEL_UUID, revision: 2, function, input: input.to_vec() })
}

fn call_rev1(p: &mut NvdimmPlatform, function: u32, input: &[u8]) -> Vec<u8> {
    let handle = p.dimms()[0].handle();
    p.call_dsm(&DsmRequest { handle, uuid: INTEL_UUID, revision: 1, function, input: input.to_vec() })
}

fn status(out: &[u8]) -> u32 {
    u32::from_le_bytes(out[..4].try_into().unwrap())
}

fn pass(b: u8) -> [u8; 32] {
    [b; 32]
}

fn state(p: &mut NvdimmPlatform, dimm: usize) -> u8 {
    let out = call(p, dimm, FN_GET_SECURITY_STATE, &[]);
    assert_eq!((out.len(), status(&out)), (12, 0));
    out[8]
}

#[test]
fn a_passphrase_set_by_the_guest_locks_the_dimm_and_its_labels_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [backing(dir.path(), "a.img")];
    let clock = Arc::new(ManualClock::default());
    let mut p = open(&paths, &[], clock.clone());
    assert_eq!(state(&mut p, 0), 0);
    let set = [pass(0), pass(7)].concat();
    assert_eq!(status(&call(&mut p, 0, FN_SET_PASSPHRASE, &set)), 0);
    assert_eq!(state(&mut p, 0), crate::security::state_bits::ENABLED);
    drop(p);

    let mut p = open(&paths, &[], clock);
    assert_eq!(state(&mut p, 0), crate::security::state_bits::ENABLED | crate::security::state_bits::LOCKED);
    let size = call_rev1(&mut p, FN_LABEL_SIZE, &[]);
    assert_eq!(status(&size), LABELS_LOCKED, "Linux reads this as -EACCES: locked");
    assert_eq!(status(&call_rev1(&mut p, FN_GET_LABEL, &[0; 8])), INVALID_STATE);
    assert_eq!(status(&call(&mut p, 0, FN_UNLOCK_UNIT, &pass(8))), INVALID_PASS);
    assert_eq!(status(&call(&mut p, 0, FN_UNLOCK_UNIT, &pass(7))), 0);
    assert_eq!(status(&call_rev1(&mut p, FN_LABEL_SIZE, &[])), 0);
    assert_eq!(p.security_view(0).unwrap().failed_attempts, 1);
}

#[test]
fn secure_erase_zeroes_the_backing_file_and_clears_poison() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [backing(dir.path(), "a.img"), backing(dir.path(), "b.img")];
    let mut p = open(&paths, &[], Arc::new(ManualClock::default()));
    p.add_poison(0, 4096, 512).unwrap();
    assert_eq!(status(&call(&mut p, 0, FN_SECURE_ERASE, &pass(1))), INVALID_PASS, "no passphrase: zeros");
    assert_eq!(status(&call(&mut p, 0, FN_SECURE_ERASE, &pass(0))), 0);
    assert!(std::fs::read(&paths[0]).unwrap().iter().all(|&b| b == 0), "DIMM 0 erased");
    assert!(std::fs::read(&paths[1]).unwrap().iter().all(|&b| b == 0xa5), "DIMM 1 untouched");
    assert!(p.poison_ranges(0).unwrap().is_empty());
}

#[test]
fn erasing_a_set_member_zeroes_its_lines_in_the_sets_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [backing(dir.path(), "a.img"), backing(dir.path(), "b.img")];
    let mut p = open(&paths, &["dimms=0,1,line=4K"], Arc::new(ManualClock::default()));
    assert_eq!(status(&call(&mut p, 1, FN_SECURE_ERASE, &pass(0))), 0);
    // DIMM 1 holds the odd lines of the set; storage is in address order over a.img, b.img.
    let stored: Vec<u8> = [std::fs::read(&paths[0]).unwrap(), std::fs::read(&paths[1]).unwrap()].concat();
    for (line, bytes) in stored.chunks(4096).enumerate() {
        let want = if line % 2 == 1 { 0 } else { 0xa5 };
        assert!(bytes.iter().all(|&b| b == want), "set line {line}");
    }
}

#[test]
fn overwrite_reports_progress_until_its_time_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [backing(dir.path(), "a.img")];
    let clock = Arc::new(ManualClock::default());
    let mut p = open(&paths, &[], clock.clone());
    let change = crate::platform_security::SecurityChange {
        overwrite_time: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    p.set_security(0, &change).unwrap();
    assert_eq!(status(&call(&mut p, 0, FN_OVERWRITE, &pass(0))), 0);
    assert!(std::fs::read(&paths[0]).unwrap().iter().all(|&b| b == 0));
    assert_eq!(p.security_view(0).unwrap().state, "overwrite");
    clock.advance(Duration::from_secs(4));
    assert_eq!(status(&call(&mut p, 0, FN_QUERY_OVERWRITE, &[])), OVERWRITE_IN_PROGRESS);
    assert_eq!(p.security_view(0).unwrap().overwrite_remaining_ms, 6000);
    clock.advance(Duration::from_secs(6));
    assert_eq!(status(&call(&mut p, 0, FN_QUERY_OVERWRITE, &[])), 0);
    assert_eq!(p.security_view(0).unwrap().state, "disabled");
}

#[test]
fn inputs_of_the_wrong_length_are_invalid_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [backing(dir.path(), "a.img")];
    let mut p = open(&paths, &[], Arc::new(ManualClock::default()));
    for (function, len) in [(19, 1), (20, 63), (20, 65), (21, 31), (22, 33), (23, 1), (24, 0), (25, 64), (26, 4), (27, 32), (28, 31)] {
        let out = call(&mut p, 0, function, &vec![0; len]);
        assert_eq!(status(&out), crate::dsm::intel_status::INVALID_INPUT, "function {function} with {len} bytes");
    }
    assert_eq!(state(&mut p, 0), 0);
    assert!(std::fs::read(&paths[0]).unwrap().iter().all(|&b| b == 0xa5));
}

#[test]
fn the_host_can_prepare_a_locked_or_frozen_dimm() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [backing(dir.path(), "a.img")];
    let mut p = open(&paths, &[], Arc::new(ManualClock::default()));
    let lock = crate::platform_security::SecurityChange { locked: Some(true), ..Default::default() };
    assert!(p.set_security(0, &lock).unwrap_err().to_string().contains("needs a passphrase"));
    let change = crate::platform_security::SecurityChange {
        passphrase: Some(Some(pass(3))),
        locked: Some(true),
        ..Default::default()
    };
    assert_eq!(p.set_security(0, &change).unwrap().state, "locked");
    assert_eq!(status(&call(&mut p, 0, FN_UNLOCK_UNIT, &pass(3))), 0);
    let freeze = crate::platform_security::SecurityChange { frozen: Some(true), ..Default::default() };
    assert_eq!(p.set_security(0, &freeze).unwrap().state, "frozen");
    assert_eq!(status(&call(&mut p, 0, FN_DISABLE_PASSPHRASE, &pass(3))), INVALID_STATE);
}
