//! `vnvdimm demo`, the README's main job, through the real binary: it boots the default
//! guest with `vnvdimm run`, and the guest's ndctl finds the host's poison by scrubbing.

use std::process::Command;

#[test]
fn the_demo_boots_the_default_platform_and_finds_the_poison() {
    vnvdimm_scenarios::require_qemu();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vnvdimm")).args(["demo", "--keep"]).arg(dir.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("ndctl sees 2 DIMMs"), "{stdout}");
    // 4 KiB at 1 GiB - 2 MiB of DIMM 0: sectors 2093056.. in region0's badblocks.
    assert!(stdout.lines().any(|l| l.trim() == "2093056 8"), "{stdout}");
    assert!(stdout.contains("Demo finished"), "{stdout}");
}
