//! Issue 10, point 7: a full file system under a backing file. With `prealloc=on` the
//! whole file is allocated at start, so a file system without room refuses the start
//! (exit 4, naming the file) instead of losing guest writes later; without it the file
//! stays sparse and the start goes ahead. Real binary, backing file on a 4 MiB tmpfs
//! (mounting needs root, as scripts/test-all runs; elsewhere the test says NOT RUN).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Option<Tmpfs> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(at).status();
    ok.is_ok_and(|s| s.success()).then(|| Tmpfs(at.to_path_buf()))
}

fn run(backing: &Path, keys: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vnvdimm"))
        .args(["run", "--backend", "tcg", "--memory", "512M", "--nvdimm"])
        .arg(format!("path={},size=16M{keys}", backing.display()))
        .env("VNV_QEMU", "/bin/false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn prealloc_on_a_full_file_system_refuses_the_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = mount_small_tmpfs(&dir.path().join("mnt")) else {
        // SAFETY: geteuid has no preconditions.
        assert_ne!(unsafe { libc::geteuid() }, 0, "root could not mount a tmpfs");
        eprintln!("NOT RUN: mounting a tmpfs needs root");
        return;
    };
    let backing = mnt.0.join("nv0.img");
    std::fs::File::create(&backing).unwrap().set_len(16 << 20).unwrap();
    let (code, stderr) = run(&backing, ",prealloc=on");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("nv0.img") && stderr.contains("prealloc=on"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!PathBuf::from(format!("{}.state.json", backing.display())).exists(), "a refused start wrote state");
    // Sparse (the default): the same DIMM starts (here QEMU is /bin/false, so the run
    // then fails as QEMU's, exit 1, and puts the state back).
    let (code, stderr) = run(&backing, "");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("QEMU ended before it was ready"), "{stderr}");
    assert!(!PathBuf::from(format!("{}.state.json", backing.display())).exists());
}
