//! AML for the NVDIMM root device and its DIMMs. STUB: filled in by the ACPI work.

use crate::config::PlatformConfig;
use crate::layout::PlatformLayout;

/// The complete SSDT holding `\_SB.NVDR` and its DIMM children (header included, checksummed).
pub fn build_ssdt(_config: &PlatformConfig, _layout: &PlatformLayout) -> Vec<u8> {
    Vec::new()
}
