//! Debug logging for things the guest does wrong (unknown ports, odd sizes). Off
//! unless `VNVDIMM_DEBUG` is set, so a hostile guest cannot flood stderr.

use std::sync::OnceLock;

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("VNVDIMM_DEBUG").is_some())
}

#[macro_export]
macro_rules! debug_log {
    ($($arg:tt)*) => {
        if $crate::debug_log::enabled() {
            eprintln!("vnvdimm debug: {}", format_args!($($arg)*));
        }
    };
}
