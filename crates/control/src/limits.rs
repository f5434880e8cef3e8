//! What one client may cost the API server: how many connections are served at once and
//! how long each part of a request may take. The defaults are what `vnvdimm run` uses;
//! tests pass shorter ones to [`crate::ApiServer::start_with`].

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::Deadlines;

/// Connections served at once by default. Each costs one thread and one descriptor; a
/// control API has a handful of clients, so this only stops a runaway or hostile one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// Default time for the request headers, for the body, and for writing the answer. A
/// real client sends a request in one write; this only bounds one that does not.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; one more is answered `503` and closed at once.
    pub max_connections: usize,
    pub deadlines: Deadlines,
}

impl Default for ServerLimits {
    fn default() -> Self {
        let d = DEFAULT_DEADLINE;
        ServerLimits { max_connections: DEFAULT_MAX_CONNECTIONS, deadlines: Deadlines { head: d, body: d, write: d } }
    }
}

/// A counting semaphore without waiting: a connection either gets a slot at once or is
/// turned away, so the accept loop never blocks on a slow client.
#[derive(Debug)]
pub struct Slots {
    used: Mutex<usize>,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots { used: Mutex::new(0), max })
    }

    /// A slot held until the guard is dropped, or `None` when all are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut used = self.used.lock_unpoisoned();
        if *used >= self.max {
            return None;
        }
        *used += 1;
        Some(Slot { slots: self.clone() })
    }

    pub fn in_use(&self) -> usize {
        *self.used.lock_unpoisoned()
    }
}

/// One taken slot; dropping it (also when its thread unwinds) gives it back.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.slots.used.lock_unpoisoned();
        *used = used.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back() {
        let slots = Slots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert_eq!(slots.in_use(), 1);
        assert!(slots.try_acquire().is_some());
    }
}
