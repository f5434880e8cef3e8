//! Issue 10, point 2: QEMU started by `vnvdimm run --backend tcg` inherited vnvdimm's
//! blocked SIGHUP/SIGINT/SIGTERM (so `kill -TERM` did nothing) and, once vnvdimm was
//! killed, lived on with the DIMM files mapped. Runs the real binary with QEMU and the
//! default guest image (as scripts/test-all provides); only QEMU's start matters here,
//! not the guest's boot.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough that nothing here depends on speed; a hang still fails.
const PATIENCE: Duration = Duration::from_secs(120);

struct Run {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Run {
    /// A failed assertion must not leave vnvdimm (and with it QEMU) running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vnvdimm run --backend tcg` in its own process group, once its API answers (QEMU is
/// up then: the API starts after QMP connected).
fn start() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("nv0.img");
    std::fs::File::create(&backing).unwrap().set_len(256 << 20).unwrap();
    let socket = dir.path().join("api.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vnvdimm"))
        .args(["run", "--backend", "tcg", "--memory", "512M", "--cmdline", "vnv.agent=hold", "--nvdimm"])
        .arg(format!("path={},size=256M", backing.display()))
        .arg("--api-socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start vnvdimm run");
    let started = Instant::now();
    while !socket.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("vnvdimm run ended before the VM came up ({status}); needs QEMU and the guest image:\n{stderr}");
        }
        assert!(started.elapsed() < PATIENCE, "the VM never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Run { child, _dir: dir }
}

/// The QEMU process vnvdimm (`pid`) started: a child of one of its threads.
fn qemu_of(pid: u32) -> u32 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.starts_with("qemu") {
                return child;
            }
        }
    }
    panic!("vnvdimm (pid {pid}) has no QEMU child");
}

fn status_mask(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) of a process this test started (or its child).
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state letter follows the parenthesised command name.
    stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
}

fn stop_signals_mask() -> u64 {
    [libc::SIGHUP, libc::SIGINT, libc::SIGTERM].iter().map(|s| 1u64 << (s - 1)).sum()
}

#[test]
fn qemu_obeys_sigterm_and_vnvdimm_says_how_qemu_ended() {
    let run = start();
    let qemu = qemu_of(run.child.id());
    assert_eq!(status_mask(qemu, "SigBlk:") & stop_signals_mask(), 0, "QEMU has vnvdimm's stop signals blocked");
    assert_eq!(status_mask(qemu, "SigIgn:") & stop_signals_mask(), 0, "QEMU ignores stop signals");
    // A SIGTERM to QEMU alone (as `kill -TERM <qemu>` from a user): QEMU stops the guest
    // and exits, and vnvdimm reports both what happened to the guest and how QEMU ended.
    signal(qemu, libc::SIGTERM);
    let mut run = run;
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "vnvdimm did not end after QEMU got SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped by the host"), "{stderr}");
    assert!(stderr.contains("QEMU ended: exit status: 0"), "{stderr}");
}

#[test]
fn qemu_dies_with_vnvdimm_even_under_sigkill() {
    let mut run = start();
    let qemu = qemu_of(run.child.id());
    assert!(running(qemu));
    // SIGKILL: vnvdimm runs no clean-up at all; only the kernel can end QEMU now.
    signal(run.child.id(), libc::SIGKILL);
    run.child.wait().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while running(qemu) {
        if Instant::now() > deadline {
            signal(qemu, libc::SIGKILL);
            panic!("QEMU (pid {qemu}) outlived vnvdimm");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
