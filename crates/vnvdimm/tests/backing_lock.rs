//! Issue 10, point 5: a second `vnvdimm run` on a backing file another one is using was
//! accepted (guest B's writes appeared in guest A, and the two corrupted each other's
//! dirty-shutdown accounting). Now the second is refused, by whatever name it gives the
//! file, with a message naming the file and the first VM's pid, and the first VM's
//! state is untouched. Runs the real binary with QEMU and the default guest image.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(120);

struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vnvdimm(backing: &Path, socket: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vnvdimm"));
    c.args(["run", "--backend", "tcg", "--memory", "512M", "--cmdline", "vnv.agent=hold", "--nvdimm"])
        .arg(format!("path={},size=256M", backing.display()))
        .arg("--api-socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    c
}

fn state_of(backing: &Path) -> String {
    std::fs::read_to_string(format!("{}.state.json", backing.display())).unwrap()
}

#[test]
fn a_second_vm_on_the_same_file_is_refused_by_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("nv0.img");
    std::fs::File::create(&backing).unwrap().set_len(256 << 20).unwrap();
    let socket = dir.path().join("a.sock");
    let mut a = Run(vnvdimm(&backing, &socket).spawn().expect("start vnvdimm run"));
    let started = Instant::now();
    while !socket.exists() {
        if let Some(status) = a.0.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(a.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("VM A ended before it came up ({status}); needs QEMU and the guest image:\n{stderr}");
        }
        assert!(started.elapsed() < PATIENCE, "VM A never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let state_a = state_of(&backing);
    let symlink = dir.path().join("link.img");
    std::os::unix::fs::symlink(&backing, &symlink).unwrap();
    let hard = dir.path().join("hard.img");
    std::fs::hard_link(&backing, &hard).unwrap();
    let dotted = dir.path().join("sub");
    std::fs::create_dir(&dotted).unwrap();
    let dotted = dotted.join("..").join("nv0.img");
    for other in [&backing, &symlink, &hard, &dotted] {
        let out = vnvdimm(other, &dir.path().join("b.sock")).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{}: {stderr}", other.display());
        assert!(stderr.contains(&other.display().to_string()), "the message names the file: {stderr}");
        assert!(stderr.contains(&format!("pid {}", a.0.id())), "the message names VM A's pid: {stderr}");
        assert_eq!(state_of(&backing), state_a, "VM B changed VM A's state");
    }
    assert!(a.0.try_wait().unwrap().is_none(), "VM A must run on");
}
