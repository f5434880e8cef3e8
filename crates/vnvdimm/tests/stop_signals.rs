//! `vnvdimm run` stopped with Ctrl-C or `kill` powers the guest off and closes the DIMMs
//! cleanly, so the next start counts no unsafe shutdown (src/stop_signals.rs). Uses the
//! TCG backend (QEMU and the default guest image, as scripts/test-all provides).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn state_says_running(state: &std::path::Path) -> Option<bool> {
    let text = std::fs::read_to_string(state).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["running"].as_bool()
}

#[test]
fn sigterm_and_sigint_power_the_guest_off_and_close_the_dimms_cleanly() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("nv0.img");
        std::fs::File::create(&backing).unwrap().set_len(256 << 20).unwrap();
        let state = dir.path().join("nv0.img.state.json");
        let socket = dir.path().join("api.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vnvdimm"))
            .args(["run", "--backend", "tcg", "--memory", "512M", "--nvdimm"])
            .arg(format!("path={},size=256M", backing.display()))
            .arg("--api-socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: the signal reaches vnvdimm only, not QEMU, as a
            // `kill PID` would.
            .process_group(0)
            .spawn()
            .expect("start vnvdimm run");
        let started = Instant::now();
        while !(socket.exists() && state_says_running(&state) == Some(true)) {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                panic!("{name}: vnvdimm run ended before the VM came up ({status}); needs QEMU and the guest image:\n{stderr}");
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{name}: the VM never came up");
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: vnvdimm must stop by itself, not die ({:?}):\n{stderr}", out.status);
        assert!(stderr.contains(&format!("{name}: powering the guest off")), "{stderr}");
        assert_eq!(state_says_running(&state), Some(false), "{name}: the DIMM was not closed cleanly:\n{stderr}");
    }
}
