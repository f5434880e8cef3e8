//! Crash-safe storage of per-DIMM state. STUB: filled in by the persistence work.
