//! Issue 10, point 6 under KVM: a start that fails after the DIMMs were opened (the guest
//! cannot be loaded, the API socket cannot be served) leaves every DIMM's state file byte
//! for byte as it was, so a failed attempt neither leaves `running: true` behind nor
//! counts a dirty shutdown; and the error says which part of the request failed, which
//! `vnvdimm run` turns into its exit status. Needs /dev/kvm (any KVM: no guest runs).

use std::path::{Path, PathBuf};

use vnvdimm_selftest::harness::sparse_machine;
use vnvdimm_vmm::launch::{self, FailureKind, LaunchError};

fn require_kvm() {
    if let Err(e) = std::fs::File::open("/dev/kvm") {
        panic!("NOT RUN: these tests build a KVM VM and /dev/kvm cannot be opened ({e})");
    }
}

fn state_path(backing: &Path) -> PathBuf {
    PathBuf::from(format!("{}.state.json", backing.display()))
}

/// Every file next to the DIMMs except the backing files, with its bytes.
fn sidecars(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|x| x != "img"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    all.sort();
    all
}

/// Two DIMMs; DIMM 0's state says a previous run crashed (running, one dirty shutdown).
fn dimms_after_a_crash(dir: &Path) -> vnvdimm_machine::Machine {
    let machine = sparse_machine(dir, 2, 64 << 20).unwrap();
    let state = serde_json::json!({ "running": true, "health": { "unsafe_shutdown_count": 1 } });
    std::fs::write(state_path(&dir.join("nvdimm0.img")), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    machine
}

fn launch_failing(machine: vnvdimm_machine::Machine, api_socket: Option<&Path>, load: Result<(), launch::LoadError>) -> LaunchError {
    let outcome = launch::run(machine, Box::new(std::io::sink()), api_socket, |_vm| load, |_backend, _io| {
        panic!("the guest must not be started")
    });
    outcome.expect_err("the start should have failed")
}

#[test]
fn a_guest_that_cannot_be_loaded_leaves_the_state_files_as_they_were() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let machine = dimms_after_a_crash(dir.path());
    let before = sidecars(dir.path());
    let err = launch_failing(machine, None, Err("the initramfs does not fit below the kernel".into()));
    assert_eq!(err.kind(), FailureKind::Usage, "{err}");
    assert!(err.to_string().contains("initramfs does not fit"), "{err}");
    let cause = std::error::Error::source(&err).expect("the loader's own error stays reachable");
    assert_eq!(cause.to_string(), "the initramfs does not fit below the kernel");
    assert_eq!(sidecars(dir.path()), before, "a failed start changed the DIMMs' state files");
    assert!(!state_path(&dir.path().join("nvdimm1.img")).exists(), "a failed start created a state file");
}

#[test]
fn an_api_socket_that_cannot_be_served_leaves_the_state_files_as_they_were() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let machine = dimms_after_a_crash(dir.path());
    let before = sidecars(dir.path());
    let socket = dir.path().join("no-such-directory").join("api.sock");
    let err = launch_failing(machine, Some(&socket), Ok(()));
    assert_eq!(err.kind(), FailureKind::Usage, "{err}");
    assert!(err.to_string().contains("no-such-directory"), "{err}");
    assert_eq!(sidecars(dir.path()), before, "a failed start changed the DIMMs' state files");
}

#[test]
fn the_dimms_are_free_again_after_a_failed_start() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let machine = dimms_after_a_crash(dir.path());
    let again = machine.clone();
    launch_failing(machine, None, Err("no".into()));
    // The backing-file locks went with the failed VM: a second start gets as far as
    // loading, and fails there for its own reason, not on a lock.
    let err = launch_failing(again, None, Err("second".into()));
    assert!(err.to_string().contains("second"), "{err}");
}
