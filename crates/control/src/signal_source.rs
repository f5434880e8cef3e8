//! Signals as an event source of the host I/O loop (host_io.rs): a signalfd for a set of
//! signals the process keeps blocked, read when epoll says so, each signal handed to a
//! handler. No thread waits in `sigwait`, and no async-signal-safety rules apply to the
//! handler: it runs in the loop like any other source.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

/// `struct signalfd_siginfo` is 128 bytes; the signal number is its first u32.
const SIGINFO_LEN: usize = 128;

pub struct SignalSource {
    fd: OwnedFd,
    handler: Box<dyn FnMut(libc::c_int) + Send>,
}

impl SignalSource {
    /// A source for `signals`, which must be blocked in every thread of the process
    /// (otherwise the default action or another thread takes them first).
    pub fn new(signals: &[libc::c_int], handler: impl FnMut(libc::c_int) + Send + 'static) -> io::Result<Self> {
        // SAFETY: initialises and fills a local set, then creates a new descriptor from it.
        let raw = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in signals {
                libc::sigaddset(&mut set, sig);
            }
            libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor signalfd just created and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(SignalSource { fd, handler: Box::new(handler) })
    }

    /// The next pending signal, if any.
    fn next(&self) -> Option<libc::c_int> {
        let mut info = [0u8; SIGINFO_LEN];
        // SAFETY: reads at most SIGINFO_LEN bytes into a buffer of that size.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), SIGINFO_LEN) };
        (n == SIGINFO_LEN as isize).then(|| u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as libc::c_int)
    }

    /// Hands every pending signal to the handler.
    fn drain(&mut self) {
        while let Some(sig) = self.next() {
            (self.handler)(sig);
        }
    }
}

impl MutEventSubscriber for SignalSource {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        self.drain();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.fd, EventSet::IN)) {
            log::warn!("cannot watch the signal descriptor: {e:?}; stop signals keep their default effect only if unblocked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Blocks `sig` in the calling thread and sends it to that thread alone, so no other
    /// thread of the test binary can take it (a process-wide SIGUSR2 would end it).
    fn block_and_raise_here(sig: libc::c_int) {
        // SAFETY: a local set; blocking and raising a signal in the calling thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::pthread_kill(libc::pthread_self(), sig);
        }
    }

    #[test]
    fn pending_signals_reach_the_handler_once_each() {
        let (tx, rx) = mpsc::channel();
        let mut source = SignalSource::new(&[libc::SIGUSR2], move |sig| {
            let _ = tx.send(sig);
        })
        .unwrap();
        source.drain();
        assert!(rx.try_recv().is_err(), "nothing pending yet");
        block_and_raise_here(libc::SIGUSR2);
        source.drain();
        assert_eq!(rx.try_recv(), Ok(libc::SIGUSR2));
        source.drain();
        assert!(rx.try_recv().is_err(), "taken once");
    }
}
