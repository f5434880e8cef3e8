//! NFIT table generation. STUB: filled in by the ACPI work.

use crate::config::PlatformConfig;
use crate::layout::PlatformLayout;

/// The complete NFIT (SDT header included, checksummed).
pub fn build(_config: &PlatformConfig, _layout: &PlatformLayout) -> Vec<u8> {
    Vec::new()
}
