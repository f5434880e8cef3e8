//! Logging for the VMM: the `log` facade, set up once by the binary, and a rate limit
//! for messages a guest can trigger at will (a failing fdatasync on every flush-hint
//! store, a failing memslot re-plan on every doorbell ring), so a hostile or merely
//! busy guest cannot flood the host's stderr.

mod rate_limit;
mod setup;

pub use rate_limit::RateLimit;
pub use setup::init;

/// `log::warn!` at most [`RateLimit::BURST`] times per [`RateLimit::WINDOW`] from this
/// call site; the next message after a quiet spell says how many were suppressed.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)*) => {{
        static LIMIT: $crate::RateLimit = $crate::RateLimit::new();
        if let Some(suppressed) = LIMIT.admit() {
            if suppressed > 0 {
                ::log::warn!("{} ({} similar messages suppressed)", format_args!($($arg)*), suppressed);
            } else {
                ::log::warn!($($arg)*);
            }
        }
    }};
}
