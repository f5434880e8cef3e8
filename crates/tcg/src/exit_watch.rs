//! Waiting for QEMU to end without a sleep loop: a pidfd (Linux 5.3+) becomes readable
//! when its process exits, so `poll` on it wakes exactly then.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// How long one wait sleeps where the kernel has no pidfd_open.
const FALLBACK_TICK: Duration = Duration::from_millis(20);

pub struct ExitWatch {
    pidfd: Option<OwnedFd>,
}

impl ExitWatch {
    /// Watches process `pid` (a child of this process, not yet reaped).
    pub fn new(pid: u32) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let pidfd = match fd {
            // SAFETY: a fresh descriptor that nothing else owns.
            fd if fd >= 0 => Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            // A kernel older than 5.3: `wait` falls back to short sleeps.
            _ => None,
        };
        ExitWatch { pidfd }
    }

    /// Sleeps until the process has ended or `at_most` has passed, whichever is first
    /// (the caller then reaps it with `try_wait`).
    pub fn wait(&self, at_most: Duration) {
        let Some(fd) = &self.pidfd else {
            std::thread::sleep(at_most.min(FALLBACK_TICK));
            return;
        };
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = at_most.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd; EINTR just ends this wait early.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wakes_when_the_process_ends_not_at_the_limit() {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let watch = ExitWatch::new(child.id());
        let started = Instant::now();
        watch.wait(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(60), "waited out the whole limit");
        assert!(child.try_wait().unwrap().is_some(), "woke before the process ended");
    }

    #[test]
    fn a_live_process_is_waited_for_at_most_the_limit() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let watch = ExitWatch::new(child.id());
        watch.wait(Duration::from_millis(50));
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
