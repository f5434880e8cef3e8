use std::path::Path;

use super::*;
use crate::config::{DimmConfig, MIB};
use crate::health::{HealthState, Temperature};
use crate::persist::{temp_path, write_atomic_until, CrashPoint};

const SIZE: u64 = 16 * MIB;

fn config_in(dir: &Path) -> DimmConfig {
    let path = dir.join("nvdimm0.img");
    let file = File::create(&path).unwrap();
    file.set_len(SIZE).unwrap();
    DimmConfig::with_defaults(0, path, SIZE)
}

fn placement() -> DimmPlacement {
    DimmPlacement { spa_base: 4 << 30, flush_hints: vec![] }
}

#[test]
fn fresh_open_has_zero_labels_and_configured_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.health = HealthState::Critical;
    let dimm = Dimm::open(config, placement()).unwrap();
    assert!(dimm.is_persistent());
    assert_eq!(dimm.labels.len(), 128 << 10);
    assert!(dimm.labels.iter().all(|&b| b == 0));
    assert_eq!(dimm.state.health.state, HealthState::Critical);
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 0);
    assert!(dimm.state.running, "marked running on disk at open");
    // The backing file was not written.
    assert_eq!(fs::metadata(&dimm.config.path).unwrap().len(), SIZE);
    assert!(dimm.sidecars().unwrap().state.exists());
    assert!(!dimm.sidecars().unwrap().labels.exists(), "no label file until the first write");
}

#[test]
fn state_and_labels_survive_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let mut dimm = Dimm::open(config.clone(), placement()).unwrap();
    dimm.write_labels(4096, b"namespace label bytes").unwrap();
    dimm.state.poison.insert(0x10000, 512).unwrap();
    let health = SmartHealth {
        spares_percent: 42,
        media_temperature: Temperature::from_celsius_f64(55.25).unwrap(),
        ..SmartHealth::with_state(HealthState::NonCritical)
    };
    let events = dimm.set_health(health.clone()).unwrap();
    assert_eq!(events, vec![Notification { target: NotifyTarget::Dimm { handle: dimm.handle() }, code: 0x81 }]);
    dimm.save_state().unwrap();
    dimm.close_clean().unwrap();
    drop(dimm);

    let dimm = Dimm::open(config, placement()).unwrap();
    assert_eq!(dimm.read_labels(4096, 21).unwrap(), b"namespace label bytes");
    assert_eq!(dimm.state.poison.len(), 1);
    assert_eq!(dimm.state.poison.total_bytes(), 512);
    assert_eq!(dimm.state.health, health);
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 0, "clean close is not counted");
    assert_eq!(dimm.state.health.last_shutdown_state, 0);
}

#[test]
fn unclean_stop_counts_a_dirty_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    drop(Dimm::open(config.clone(), placement()).unwrap()); // no close_clean: a crash
    let dimm = Dimm::open(config.clone(), placement()).unwrap();
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 1);
    assert_eq!(dimm.state.health.last_shutdown_state, 1);
    drop(dimm);
    let mut dimm = Dimm::open(config.clone(), placement()).unwrap();
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 2);
    dimm.close_clean().unwrap();
    drop(dimm);
    let dimm = Dimm::open(config, placement()).unwrap();
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 2, "the count never goes down");
    assert_eq!(dimm.state.health.last_shutdown_state, 0, "a clean stop reads clean");
}

#[test]
fn disarmed_latch_does_not_count_and_is_rearmed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let mut dimm = Dimm::open(config.clone(), placement()).unwrap();
    dimm.set_shutdown_latch(false).unwrap();
    drop(dimm);
    let dimm = Dimm::open(config.clone(), placement()).unwrap();
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 0);
    assert!(dimm.state.latch_shutdown_status);
    drop(dimm);
    let dimm = Dimm::open(config, placement()).unwrap();
    assert_eq!(dimm.state.health.unsafe_shutdown_count, 1);
}

#[test]
fn interrupted_state_write_leaves_old_state_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let mut dimm = Dimm::open(config.clone(), placement()).unwrap();
    dimm.set_health(SmartHealth { spares_percent: 77, ..SmartHealth::default() }).unwrap();
    dimm.close_clean().unwrap();
    let paths = dimm.sidecars().unwrap().clone();

    // A newer state reached the temp file but the rename never happened.
    let mut newer = dimm.state.clone();
    newer.health.spares_percent = 3;
    write_atomic_until(&paths.state, &serde_json::to_vec(&newer).unwrap(), Some(CrashPoint::BeforeRename)).unwrap();
    // Same for labels: a torn temp file of the wrong size must not matter.
    write_atomic_until(&paths.labels, b"torn", Some(CrashPoint::BeforeRename)).unwrap();
    assert!(temp_path(&paths.state).exists());
    drop(dimm);

    let dimm = Dimm::open(config, placement()).unwrap();
    assert_eq!(dimm.state.health.spares_percent, 77);
    assert!(dimm.labels.iter().all(|&b| b == 0));
}

#[test]
fn failed_label_write_leaves_memory_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let mut dimm = Dimm::open(config, placement()).unwrap();
    dimm.write_labels(0, &[1; 16]).unwrap();
    // Make the temp file path a directory so the atomic write fails.
    let paths = dimm.sidecars().unwrap().clone();
    fs::create_dir(temp_path(&paths.labels)).unwrap();
    let err = dimm.write_labels(0, &[2; 16]).unwrap_err();
    assert!(err.to_string().contains(".labels.tmp"), "{err}");
    assert_eq!(dimm.read_labels(0, 16).unwrap(), &[1; 16]);
}

#[test]
fn short_backing_file_is_refused_with_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    File::options().write(true).open(&config.path).unwrap().set_len(SIZE - 4096).unwrap();
    let err = Dimm::open(config.clone(), placement()).err().unwrap().to_string();
    assert!(err.contains("nvdimm0.img"), "{err}");
    assert!(err.contains(&(SIZE - 4096).to_string()) && err.contains(&SIZE.to_string()), "{err}");
    assert!(!SidecarPaths::for_backing_file(&config.path).state.exists(), "nothing written on refusal");
}

#[test]
fn missing_backing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = DimmConfig::with_defaults(0, dir.path().join("absent.img"), SIZE);
    let err = Dimm::open(config, placement()).err().unwrap();
    assert!(matches!(err, DimmError::BackingFile { .. }));
    assert!(err.to_string().contains("absent.img"), "{err}");
}

#[test]
fn directory_as_backing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = DimmConfig::with_defaults(0, dir.path().to_path_buf(), SIZE);
    assert!(matches!(Dimm::open(config, placement()), Err(DimmError::BackingNotFile { .. })));
}

#[test]
fn wrong_size_label_sidecar_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let paths = SidecarPaths::for_backing_file(&config.path);
    fs::write(&paths.labels, vec![0u8; 1024]).unwrap();
    let err = Dimm::open(config, placement()).err().unwrap();
    assert!(matches!(err, DimmError::LabelSidecarSize { actual: 1024, expected: 131072, .. }), "{err}");
}

#[test]
fn corrupt_state_is_refused_not_silently_reset() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let paths = SidecarPaths::for_backing_file(&config.path);
    fs::write(&paths.state, b"{\"health\": 7}").unwrap();
    let err = Dimm::open(config, placement()).err().unwrap().to_string();
    assert!(err.contains("state.json"), "{err}");
}

#[test]
fn ephemeral_dimm_never_touches_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let mut dimm = Dimm::ephemeral(config.clone(), placement());
    dimm.write_labels(0, b"x").unwrap();
    dimm.set_health(SmartHealth::with_state(HealthState::Fatal)).unwrap();
    dimm.save_state().unwrap();
    dimm.close_clean().unwrap();
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("nvdimm0.img")]);
}

#[test]
fn label_writes_are_bounds_checked_and_refused_when_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    let mut dimm = Dimm::ephemeral(config.clone(), placement());
    assert!(matches!(dimm.write_labels((128 << 10) - 1, &[0, 0]), Err(DimmError::LabelRange { .. })));
    assert!(matches!(dimm.write_labels(u64::MAX, &[0]), Err(DimmError::LabelRange { .. })));
    assert!(dimm.read_labels(u64::MAX, 2).is_none());
    config.readonly = true;
    let mut ro = Dimm::ephemeral(config, placement());
    assert!(matches!(ro.write_labels(0, &[1]), Err(DimmError::ReadOnly { .. })));
}

#[test]
fn health_events_only_for_guest_visible_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut dimm = Dimm::ephemeral(config_in(dir.path()), placement());
    let warmer = SmartHealth { media_temperature: Temperature::from_celsius(45).unwrap(), ..SmartHealth::default() };
    assert!(dimm.set_health(warmer).unwrap().is_empty(), "a temperature change alone is no event");
    let mut thresholds = SmartThresholds::default();
    thresholds.alarm_control.media_temperature = true;
    thresholds.media_temperature = Temperature::from_celsius(40).unwrap();
    assert_eq!(dimm.set_thresholds(thresholds).unwrap().len(), 1, "enabling a crossed alarm trips it");
    assert!(dimm.smart().alarm_trips.media_temperature);
    let events = dimm.set_injection(SmartInjection { fatal: true, ..SmartInjection::default() }).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(dimm.smart().state, HealthState::Fatal);
    assert_eq!(dimm.state.health.state, HealthState::Ok, "injection does not overwrite host values");
}

#[test]
fn unsafe_shutdown_injection_bumps_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut dimm = Dimm::ephemeral(config_in(dir.path()), placement());
    let req = InjectRequest { media_temperature: None, spares_percent: None, fatal: None, unsafe_shutdown: Some(true) };
    assert_eq!(dimm.inject(&req).unwrap().len(), 1);
    dimm.inject(&req).unwrap();
    assert_eq!(dimm.smart().unsafe_shutdown_count, 1);
    assert_eq!(dimm.smart().last_shutdown_state, 1);
    let un = InjectRequest { unsafe_shutdown: Some(false), ..req };
    assert_eq!(dimm.inject(&un).unwrap().len(), 1);
    assert_eq!(dimm.smart().last_shutdown_state, 0);
    assert_eq!(dimm.smart().unsafe_shutdown_count, 1);
}

#[test]
fn old_state_files_without_new_fields_still_load() {
    let state: DimmState = serde_json::from_str(r#"{"poison": [], "health": {"state": "fatal"}}"#).unwrap();
    assert_eq!(state.health.state, HealthState::Fatal);
    assert!(state.latch_shutdown_status);
    assert!(state.injection.is_empty());
}

#[test]
fn failed_state_save_rolls_back_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut dimm = Dimm::open(config_in(dir.path()), placement()).unwrap();
    let paths = dimm.sidecars().unwrap().clone();
    fs::create_dir(temp_path(&paths.state)).unwrap();
    let before = dimm.state.clone();
    assert!(dimm.set_health(SmartHealth::with_state(HealthState::Fatal)).is_err());
    assert!(dimm.set_shutdown_latch(false).is_err());
    assert_eq!(dimm.state, before);
}
