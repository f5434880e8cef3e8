//! Ends a run whose guest writes stop reaching the backing files (issue 10, point 7):
//! every few seconds each writable DIMM's backing file is asked for write-back errors
//! (`nvdimm_model::writeback`); on the first one the caller is told (it says which file
//! and powers the guest off) and the watch stops. The DIMM remembers the failure, so
//! the run then ends as a failure and the DIMM is not marked cleanly closed.

use crate::sync::LockUnpoisoned;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::writeback::WritebackProbe;

/// How often the backing files are checked. Each check also writes back what the guest
/// stored since the last one (the kernel would within 30 s anyway).
pub const INTERVAL: Duration = Duration::from_secs(5);

/// One file to check: its path and the check itself.
pub type Check = (PathBuf, Box<dyn Fn() -> io::Result<()> + Send>);

/// The checks of `probes`.
pub fn checks(probes: Vec<WritebackProbe>) -> Vec<Check> {
    probes.into_iter().map(|p| (p.path.clone(), Box::new(move || p.check()) as Box<_>)).collect()
}

/// The running watch; dropping it stops the thread (call it before closing the DIMMs,
/// so a check cannot race the final one).
pub struct Watch {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks every `interval`; calls `on_failure` once, for the first failing file.
pub fn start(
    checks: Vec<Check>,
    interval: Duration,
    on_failure: impl FnOnce(&PathBuf, &io::Error) + Send + 'static,
) -> Watch {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("writeback-watch".into())
        .spawn(move || loop {
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            for (path, check) in &checks {
                if let Err(e) = check() {
                    on_failure(path, &e);
                    return;
                }
            }
        })
        .ok();
    Watch { stop: Some(stop), thread }
}

/// The watch both backends run: every writable DIMM of `platform` checked; at the first
/// failure the operator is told which file lost the guest's writes and `power_off` runs
/// (a guest that goes on writing into a file that cannot store them loses data silently).
pub fn power_off_on_loss(
    platform: &std::sync::Mutex<crate::NvdimmPlatform>,
    power_off: impl FnOnce() + Send + 'static,
) -> Watch {
    let probes = {
        let platform = platform.lock_unpoisoned();
        platform.dimms().iter().filter_map(|d| d.writeback_probe()).collect()
    };
    start(checks(probes), INTERVAL, move |path, e| {
        log::error!(
            "backing file {}: the guest's writes could not be stored ({e}); powering the guest off",
            path.display()
        );
        power_off();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_first_failure_is_reported_once_and_the_watch_ends() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fine: Check = ("/a.img".into(), Box::new(|| Ok(())));
        let full: Check = ("/b.img".into(), Box::new(|| Err(io::Error::from_raw_os_error(libc::ENOSPC))));
        let (tx, rx) = mpsc::channel();
        let seen = calls.clone();
        let watch = start(vec![fine, full], Duration::from_millis(10), move |path, e| {
            seen.lock().unwrap().push(format!("{} {e}", path.display()));
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("the failure was reported");
        drop(watch);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].starts_with("/b.img No space left on device"), "{calls:?}");
    }

    #[test]
    fn dropping_the_watch_stops_it_without_waiting_for_the_interval() {
        let watch = start(Vec::new(), Duration::from_secs(3600), |_, _| {});
        drop(watch); // joins: a hang here fails the test run
    }
}
