//! Address Range Scrub state machine. STUB: filled in by the poison/ARS work.

#[derive(Debug, Default)]
pub struct ArsEngine {}
