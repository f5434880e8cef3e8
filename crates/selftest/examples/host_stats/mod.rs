//! Host memory figures the examples print, read from /proc.

/// A field of a /proc status file (/proc/self/status, /proc/meminfo) in KiB; 0 when it
/// cannot be read, so a missing figure shows as 0 rather than stopping a measurement.
pub fn kib(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
