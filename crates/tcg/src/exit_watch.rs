//! Knowing when QEMU ends without a sleep loop: a pidfd (Linux 5.3+) becomes readable
//! when its process exits, and it is a source of the VM's host I/O loop, which tells the
//! thread waiting in [`ExitWatch::wait`] at once.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use nvdimm_model::sync::LockUnpoisoned;
use vnvdimm_control::host_io::HostIo;

/// How long one wait sleeps where the kernel has no pidfd_open.
const FALLBACK_TICK: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Ended {
    ended: Mutex<bool>,
    changed: Condvar,
}

pub struct ExitWatch {
    /// `None` where the loop cannot watch the process (no pidfd_open).
    ended: Option<Arc<Ended>>,
}

impl ExitWatch {
    /// Watches process `pid` (a child of this process, not yet reaped) from `host_io`.
    pub fn new(pid: u32, host_io: &HostIo) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            // A kernel older than 5.3: `wait` falls back to short sleeps.
            return ExitWatch { ended: None };
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let ended = Arc::new(Ended::default());
        let source = PidfdSource { pidfd, ended: ended.clone() };
        match host_io.add(Box::new(source)) {
            Ok(_) => ExitWatch { ended: Some(ended) },
            Err(e) => {
                log::warn!("cannot watch QEMU's end from the host I/O loop: {e}; checking every {FALLBACK_TICK:?}");
                ExitWatch { ended: None }
            }
        }
    }

    /// Sleeps until the process has ended or `at_most` has passed, whichever is first
    /// (the caller then reaps it with `try_wait`).
    pub fn wait(&self, at_most: Duration) {
        let Some(ended) = &self.ended else {
            std::thread::sleep(at_most.min(FALLBACK_TICK));
            return;
        };
        let deadline = Instant::now() + at_most;
        let mut done = ended.ended.lock_unpoisoned();
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            done = ended.changed.wait_timeout(done, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The pidfd in the loop: readable once, when the process ends.
struct PidfdSource {
    pidfd: OwnedFd,
    ended: Arc<Ended>,
}

impl MutEventSubscriber for PidfdSource {
    fn process(&mut self, _events: Events, ops: &mut EventOps) {
        // Stays readable from now on: stop watching it.
        let _ = ops.remove(Events::new(&self.pidfd, EventSet::IN));
        *self.ended.ended.lock_unpoisoned() = true;
        self.ended.changed.notify_all();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.pidfd, EventSet::IN)) {
            log::warn!("cannot watch QEMU's pidfd: {e:?}; its end is seen at the next check");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_when_the_process_ends_not_at_the_limit() {
        let host_io = HostIo::start().unwrap();
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let watch = ExitWatch::new(child.id(), &host_io);
        assert!(watch.ended.is_some(), "this kernel has pidfd_open");
        let started = Instant::now();
        watch.wait(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(60), "waited out the whole limit");
        assert!(child.try_wait().unwrap().is_some(), "woke before the process ended");
    }

    #[test]
    fn a_live_process_is_waited_for_at_most_the_limit() {
        let host_io = HostIo::start().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let watch = ExitWatch::new(child.id(), &host_io);
        watch.wait(Duration::from_millis(50));
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
