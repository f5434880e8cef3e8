//! A per-call-site message budget: a burst per time window, lock-free so a vCPU thread
//! that logs never waits on another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct RateLimit {
    /// Start of the current window, in milliseconds since the first use of any limit.
    window_start_ms: AtomicU64,
    /// Messages admitted in the current window.
    admitted: AtomicU64,
    /// Messages dropped since the last one admitted.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// Messages let through per window.
    pub const BURST: u64 = 5;
    pub const WINDOW: Duration = Duration::from_secs(60);

    pub const fn new() -> Self {
        RateLimit { window_start_ms: AtomicU64::new(0), admitted: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Some(messages suppressed before this one) if this message may be printed.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(elapsed_ms())
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        let window_ms = Self::WINDOW.as_millis() as u64;
        // Only one thread wins the switch to a new window; the others count in it.
        if now_ms.saturating_sub(start) >= window_ms
            && self.window_start_ms.compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.admitted.store(0, Ordering::Relaxed);
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) < Self::BURST {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the first call, plus one window so that a fresh limit (start 0)
/// begins a new window at its first message.
fn elapsed_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + RateLimit::WINDOW.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = RateLimit::WINDOW.as_millis() as u64;

    #[test]
    fn a_burst_passes_then_the_rest_of_the_window_is_dropped() {
        let limit = RateLimit::new();
        let admitted: Vec<_> = (0..20).map(|i| limit.admit_at(W + i)).collect();
        assert_eq!(admitted.iter().filter(|a| a.is_some()).count() as u64, RateLimit::BURST);
        assert!(admitted[..RateLimit::BURST as usize].iter().all(|a| *a == Some(0)));
    }

    #[test]
    fn the_next_window_reports_how_many_were_dropped() {
        let limit = RateLimit::new();
        for i in 0..RateLimit::BURST + 7 {
            limit.admit_at(W + i);
        }
        assert_eq!(limit.admit_at(2 * W + 10), Some(7));
        assert_eq!(limit.admit_at(2 * W + 11), Some(0));
    }

    #[test]
    fn call_sites_have_separate_budgets() {
        let (a, b) = (RateLimit::new(), RateLimit::new());
        for i in 0..RateLimit::BURST {
            a.admit_at(W + i);
        }
        assert_eq!(a.admit_at(W + 10), None);
        assert_eq!(b.admit_at(W + 10), Some(0));
    }
}
