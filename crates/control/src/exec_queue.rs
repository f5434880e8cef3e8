//! `POST /exec` requests waiting for the guest. The guest agent runs one command at a
//! time, so requests queue; unbounded, abandoned ones kept the queue busy long after
//! their clients had gone (issue 10, point 8). So: at most [`MAX_EXEC_PENDING`] requests
//! queued or running (one more is refused with 429), and a request whose client hangs
//! up while it waits leaves the queue without running. A command already running in the
//! guest cannot be stopped from here (the agent protocol has no cancel); it ends at its
//! own `timeout_secs`.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nvdimm_model::event_log::MachineCheckKind;
use nvdimm_model::NvdimmPlatform;

use crate::backend::{Backend, BackendError, ExecOutput, VmInfo};

/// Requests queued or running at once.
pub const MAX_EXEC_PENDING: usize = 4;

/// How often a waiting request looks whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct State {
    pending: usize,
    running: bool,
}

#[derive(Debug)]
pub struct ExecQueue {
    state: Mutex<State>,
    changed: Condvar,
    max: usize,
}

impl ExecQueue {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ExecQueue { state: Mutex::new(State::default()), changed: Condvar::new(), max })
    }

    /// A place in the queue, or `None` when it is full.
    pub fn enter(self: &Arc<Self>) -> Option<Ticket> {
        let mut state = self.lock();
        if state.pending >= self.max {
            return None;
        }
        state.pending += 1;
        Some(Ticket { queue: self.clone() })
    }

    /// Requests queued or running now.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }
}

/// A request in the queue; dropping it leaves the queue.
#[derive(Debug)]
pub struct Ticket {
    queue: Arc<ExecQueue>,
}

impl Ticket {
    /// Waits until no other command runs, then holds the turn until the returned guard
    /// is dropped. `None` when `client_gone` says the client hung up first.
    pub fn wait_turn(&self, client_gone: impl Fn() -> bool) -> Option<Turn<'_>> {
        let queue = &self.queue;
        let mut state = queue.lock();
        loop {
            if client_gone() {
                return None;
            }
            if !state.running {
                state.running = true;
                return Some(Turn { queue });
            }
            state = queue.changed.wait_timeout(state, CLIENT_CHECK).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.lock().pending -= 1;
    }
}

/// The right to run a command now.
#[derive(Debug)]
pub struct Turn<'a> {
    queue: &'a ExecQueue,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.queue.lock().running = false;
        self.queue.changed.notify_all();
    }
}

/// The backend as one `exec` request sees it: `exec` waits for its turn in the queue
/// (after the handler has validated the request), everything else goes straight through.
pub struct Queued<'a> {
    pub inner: &'a dyn Backend,
    pub ticket: &'a Ticket,
    /// Whether the request's client has hung up.
    pub client_gone: &'a (dyn Fn() -> bool + Sync),
}

impl Backend for Queued<'_> {
    fn info(&self) -> VmInfo {
        self.inner.info()
    }

    fn platform(&self) -> &Mutex<NvdimmPlatform> {
        self.inner.platform()
    }

    fn raise_notifications(&self) -> Result<(), BackendError> {
        self.inner.raise_notifications()
    }

    fn machine_check(&self, gpa: u64, kind: MachineCheckKind) -> Result<(), BackendError> {
        self.inner.machine_check(gpa, kind)
    }

    fn poison_changed(&self, dimm: usize) -> Result<(), BackendError> {
        self.inner.poison_changed(dimm)
    }

    fn flush_counts(&self) -> Vec<u64> {
        self.inner.flush_counts()
    }

    fn power_off(&self) -> Result<(), BackendError> {
        self.inner.power_off()
    }

    fn exec(&self, command: &str, timeout: Duration, cancelled: &dyn Fn() -> bool) -> Result<ExecOutput, BackendError> {
        let gone = || cancelled() || (self.client_gone)();
        let Some(_turn) = self.ticket.wait_turn(gone) else {
            // Nobody is left to read the answer; the command never ran.
            return Err(BackendError::Conflict("the client went away before the command ran".into()));
        };
        // Nor once it runs: the guest kills it rather than let it hold the queue.
        self.inner.exec(command, timeout, &gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_one_runs_at_a_time() {
        let q = ExecQueue::new(2);
        let a = q.enter().unwrap();
        let b = q.enter().unwrap();
        assert!(q.enter().is_none());
        let turn = a.wait_turn(|| false).unwrap();
        // b waits; its client goes away meanwhile, so it gives up without a turn.
        assert!(b.wait_turn(|| true).is_none());
        drop(turn);
        assert!(b.wait_turn(|| false).is_some());
        drop((a, b));
        assert_eq!(q.pending(), 0);
    }
}
