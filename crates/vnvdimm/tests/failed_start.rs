//! Issue 10, point 6: a start that fails leaves no trace. The DIMMs' state sidecars are
//! byte for byte as before (no `running: true`, no dirty shutdown counted), bad options
//! exit 2, a host that cannot provide what the options name exits 4, and a `--kernel`
//! that is not a kernel is refused at once. Runs the real binary; none of these cases
//! boots a guest.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Dimms {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
}

fn dimms(n: usize) -> Dimms {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("nv{i}.img"))).collect();
    for f in &files {
        std::fs::File::create(f).unwrap().set_len(128 << 20).unwrap();
    }
    Dimms { dir, files }
}

fn state_path(backing: &Path) -> PathBuf {
    PathBuf::from(format!("{}.state.json", backing.display()))
}

/// Every sidecar in the directory, with its bytes.
fn sidecars(d: &Dimms) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|x| x != "img"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
        .collect();
    all.sort();
    all
}

fn run(d: &Dimms, extra: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vnvdimm"));
    c.args(["run", "--backend", "tcg", "--memory", "512M"]);
    for f in &d.files {
        c.arg("--nvdimm").arg(format!("path={},size=128M", f.display()));
    }
    c.args(extra).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// A previous run that crashed: DIMM 0's state says running, with one dirty shutdown.
fn crashed_before(d: &Dimms) {
    let state = serde_json::json!({ "running": true, "health": { "unsafe_shutdown_count": 1 } });
    std::fs::write(state_path(&d.files[0]), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
}

#[test]
fn a_kernel_of_zeros_is_refused_at_once_as_a_bad_option() {
    let d = dimms(1);
    let zeros = d.dir.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let (out, stderr) = run(&d, &["--kernel", zeros.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a Linux kernel") && stderr.contains("zeros"), "{stderr}");
    assert!(!state_path(&d.files[0]).exists(), "a refused start wrote a state file");
}

#[test]
fn qemu_that_fails_to_start_leaves_the_state_files_as_they_were() {
    let d = dimms(2);
    crashed_before(&d);
    let before = sidecars(&d);
    // A "QEMU" that exits at once, as one refusing its options or kernel does.
    let (out, stderr) = run(&d, &[], &[("VNV_QEMU", "/bin/false")]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("QEMU ended before it was ready (exit status: 1)"), "{stderr}");
    assert_eq!(sidecars(&d), before, "the failed start changed the sidecars:\n{stderr}");
}

#[test]
fn a_busy_second_dimm_exits_4_and_leaves_the_first_untouched() {
    let d = dimms(2);
    crashed_before(&d);
    let before = sidecars(&d);
    // This test process holds DIMM 1 the way another VM would.
    let held = std::fs::File::open(&d.files[1]).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let (out, stderr) = run(&d, &[], &[]);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("nv1.img") && stderr.contains(&format!("pid {}", std::process::id())), "{stderr}");
    assert_eq!(sidecars(&d), before, "DIMM 0's state changed although the start was refused");
}

#[test]
fn an_unreadable_state_file_is_a_host_error_4_and_a_missing_backing_file_a_bad_option_2() {
    let d = dimms(2);
    // EISDIR when reading DIMM 1's state: an I/O error, not the user's option.
    std::fs::create_dir(state_path(&d.files[1])).unwrap();
    let before = sidecars(&d);
    let (out, stderr) = run(&d, &[], &[]);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("nv1.img.state.json"), "{stderr}");
    assert_eq!(sidecars(&d), before);
    std::fs::remove_dir(state_path(&d.files[1])).unwrap();
    std::fs::remove_file(&d.files[1]).unwrap();
    let (out, stderr) = run(&d, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!state_path(&d.files[0]).exists());
}
