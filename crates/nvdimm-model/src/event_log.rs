//! A bounded, sequence-numbered log of what happened on the platform: `_DSM` calls,
//! flushes, machine checks, notifications, host actions. The control API reads it
//! with "everything after sequence number N", so clients can follow it.

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;

use crate::events::{DsmCallRecord, Notification};

/// How many events are kept; older ones are dropped first.
pub const EVENT_LOG_CAPACITY: usize = 10_000;

/// Kind of machine check delivered to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineCheckKind {
    /// SRAR: a load consumed poison; the guest must act before continuing.
    ActionRequired,
    /// SRAO: found by a patrol scrub; the guest may act later.
    ActionOptional,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    Dsm(DsmCallRecord),
    Flush { dimm: usize, handle: u32 },
    MachineCheck { gpa: u64, kind: MachineCheckKind, delivered: bool },
    Notify(Notification),
    PoisonAdded { dimm: usize, offset: u64, length: u64 },
    PoisonCleared { dimm: usize, offset: u64, length: u64 },
    HealthChanged { dimm: usize },
    PowerOff { reason: String },
    /// Secure erase, master erase or overwrite zeroed the DIMM's media in its storage.
    MediaErased { dimm: usize, bytes: u64 },
    /// ... or could not (the guest was answered with a hardware error).
    MediaEraseFailed { dimm: usize, error: String },
    /// A DIMM's state sidecar could not be written after a change the guest made.
    StateSaveFailed { dimm: usize, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Strictly increasing, starting at 1.
    pub seq: u64,
    /// Milliseconds since the log was created (the VMM's start).
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug)]
pub struct EventLog {
    events: VecDeque<Event>,
    next_seq: u64,
    capacity: usize,
    start: Instant,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_capacity(EVENT_LOG_CAPACITY)
    }
}

impl EventLog {
    pub fn with_capacity(capacity: usize) -> Self {
        EventLog { events: VecDeque::new(), next_seq: 1, capacity: capacity.max(1), start: Instant::now() }
    }

    pub fn push(&mut self, kind: EventKind) -> u64 {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let time_ms = self.start.elapsed().as_millis() as u64;
        self.events.push_back(Event { seq, time_ms, kind });
        seq
    }

    /// Events with a sequence number greater than `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Event> {
        // Sequence numbers are contiguous, so the first wanted event's position is arithmetic.
        let first = self.events.front().map_or(0, |e| e.seq);
        let skip = (after + 1).saturating_sub(first).min(self.events.len() as u64) as usize;
        self.events.iter().skip(skip).cloned().collect()
    }

    /// Sequence number of the newest event (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power_off(n: usize) -> EventKind {
        EventKind::PowerOff { reason: n.to_string() }
    }

    #[test]
    fn since_returns_newer_events_in_order() {
        let mut log = EventLog::with_capacity(10);
        for n in 0..5 {
            log.push(power_off(n));
        }
        let seqs: Vec<u64> = log.since(2).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(log.since(5).is_empty());
        assert_eq!(log.since(0).len(), 5);
    }

    #[test]
    fn capacity_drops_oldest() {
        let mut log = EventLog::with_capacity(3);
        for n in 0..7 {
            log.push(power_off(n));
        }
        let seqs: Vec<u64> = log.since(0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![5, 6, 7]);
        assert_eq!(log.since(6).len(), 1);
        assert_eq!(log.last_seq(), 7);
    }
}
